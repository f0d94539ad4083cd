"""Each task's content hash: a known task id submitted again with other content is seen.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from elastic.tasks import content_hash

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BACKFILL_ROWS = 1000


def upgrade() -> None:
    """Apply this revision: add the column and fill it for the tasks already there."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=64), nullable=True))
    tasks = sa.table('tasks', sa.column('seq', sa.Integer()), sa.column('type', sa.String()),
                     sa.column('data', sa.JSON()), sa.column('content_hash', sa.String()))
    connection = op.get_bind()
    last = -1
    while True:
        rows = connection.execute(sa.select(tasks.c.seq, tasks.c.type, tasks.c.data)
                                  .where(tasks.c.seq > last).order_by(tasks.c.seq)
                                  .limit(BACKFILL_ROWS)).all()
        for seq, task_type, data in rows:
            connection.execute(sa.update(tasks).where(tasks.c.seq == seq)
                               .values(content_hash=content_hash(task_type, data)))
        if len(rows) < BACKFILL_ROWS:
            return
        last = rows[-1].seq


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('content_hash')
