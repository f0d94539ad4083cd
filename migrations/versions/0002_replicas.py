"""Replicas share everything through the database: provider budgets and the results-file claim.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('provider_budgets',
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('cooldown_until', sa.Float(precision=53), nullable=True),
    sa.PrimaryKeyConstraint('provider', 'key_id', name=op.f('pk_provider_budgets'))
    )
    op.create_table('provider_requests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('reservation_id', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('requested_at', sa.Float(precision=53), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_requests')),
    sa.UniqueConstraint('reservation_id', name=op.f('uq_provider_requests_reservation_id'))
    )
    op.create_index('ix_provider_requests_budget', 'provider_requests',
                    ['provider', 'key_id', 'requested_at'], unique=False)
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('export_claimed_until', sa.Float(precision=53),
                                      nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('export_claimed_until')
    op.drop_index('ix_provider_requests_budget', table_name='provider_requests')
    op.drop_table('provider_requests')
    op.drop_table('provider_budgets')
