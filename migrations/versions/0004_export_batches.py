"""Results files written exactly once: each claim of tasks for a results file names its batch.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('export_batch', sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('export_batch')
