"""Initial schema: tasks, their attempts, and workers.

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('tasks',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('algorithm', sa.String(length=64), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('estimated_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=500), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('lease_token', sa.Integer(), server_default='0', nullable=False),
    sa.Column('lease_expires_at', sa.Float(precision=53), nullable=True),
    sa.Column('progress', sa.Float(precision=53), nullable=True),
    sa.Column('checkpoint', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(precision=53), nullable=False),
    sa.Column('started_at', sa.Float(precision=53), nullable=True),
    sa.Column('finished_at', sa.Float(precision=53), nullable=True),
    sa.Column('exported', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_tasks')),
    sa.UniqueConstraint('task_id', name=op.f('uq_tasks_task_id'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_finished', ['exported', 'finished_at'], unique=False)
        batch_op.create_index('ix_tasks_queue', ['status', 'priority', 'seq'], unique=False)
        batch_op.create_index('ix_tasks_worker', ['worker_id', 'status'], unique=False)

    op.create_table('workers',
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('worker_type', sa.String(length=64), nullable=False),
    sa.Column('capabilities', sa.JSON(), nullable=False),
    sa.Column('task_types', sa.JSON(), nullable=False),
    sa.Column('algorithms', sa.JSON(), nullable=False),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('capacity', sa.Integer(), server_default='1', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('registered_at', sa.Float(precision=53), nullable=False),
    sa.Column('last_heartbeat_at', sa.Float(precision=53), nullable=False),
    sa.Column('tasks_completed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('tasks_failed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('info', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('worker_id', name=op.f('pk_workers'))
    )
    op.create_table('attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('lease_token', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Float(precision=53), nullable=False),
    sa.Column('ended_at', sa.Float(precision=53), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.task_id'], name=op.f('fk_attempts_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts'))
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempts_task_id'), ['task_id'], unique=False)



def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempts_task_id'))

    op.drop_table('attempts')
    op.drop_table('workers')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_worker')
        batch_op.drop_index('ix_tasks_queue')
        batch_op.drop_index('ix_tasks_finished')

    op.drop_table('tasks')
