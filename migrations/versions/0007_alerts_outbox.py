"""The alert outbox, and the indexes /metrics counts over.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

Timestamp = sa.Float(precision=53)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        'alert_outbox',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('target', sa.String(length=500), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', Timestamp, nullable=False),
        sa.Column('due_at', Timestamp, nullable=False),
        sa.Column('tries', sa.Integer(), server_default='0', nullable=False),
        sa.Column('claimed_by', sa.String(length=200), nullable=True),
        sa.Column('claimed_until', Timestamp, nullable=True),
        sa.Column('sent_at', Timestamp, nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_outbox')),
    )
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_alert_outbox_due', ['sent_at', 'due_at'], unique=False)
        batch_op.create_index('ix_alert_outbox_subject', ['event', 'subject', 'created_at'],
                              unique=False)
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_status_type', ['status', 'type'], unique=False)
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_outcome', ['outcome', 'attempt'], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_outcome')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_status_type')
    op.drop_table('alert_outbox')
