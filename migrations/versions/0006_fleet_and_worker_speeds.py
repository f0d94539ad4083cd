"""Each worker's measured speed per task type and kernel, for the `fastest` load balancing.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('worker_speeds',
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('task_type', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=64), nullable=False),
    sa.Column('seconds_per_task', sa.Float(precision=53), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(precision=53), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.worker_id'],
                            name=op.f('fk_worker_speeds_worker_id_workers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('worker_id', 'task_type', 'algorithm', name=op.f('pk_worker_speeds'))
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table('worker_speeds')
