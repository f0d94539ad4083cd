"""Held tasks, worker deaths, retry backoff, time limits, worker secrets, the orchestrator clock.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def task_columns() -> list[sa.Column]:
    """The columns this revision adds to ``tasks`` (new objects each call: a Column joins one table)."""
    return [
        sa.Column('worker_deaths', sa.Integer(), server_default='0', nullable=False),
        sa.Column('held_reason', sa.String(length=32), nullable=True),
        sa.Column('timeout_seconds', sa.Float(precision=53), nullable=True),
        sa.Column('not_before', sa.Float(precision=53), server_default='0', nullable=False),
        sa.Column('avoid_worker_id', sa.String(length=200), nullable=True),
        sa.Column('avoid_until', sa.Float(precision=53), nullable=True),
    ]


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        for column in task_columns():
            batch_op.add_column(column)
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secret_hash', sa.String(length=64), nullable=True))
    op.create_table('orchestrator_clock',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_expiry_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orchestrator_clock'))
    )


def downgrade() -> None:
    """Undo this revision."""
    op.drop_table('orchestrator_clock')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('secret_hash')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        for column in reversed(task_columns()):
            batch_op.drop_column(column.name)
