"""hourly pick capacity: the units a node (a store between walk-in customers) picks for online orders per hour;
approver keys: client keys that may approve their channel's orders awaiting approval

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0024'
down_revision: Union[str, Sequence[str], None] = '0023'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('nodes', sa.Column('units_per_hour', sa.Integer(), nullable=True))
    # The last hour's work at a node: its reservations by when they were made.
    op.create_index('ix_reservations_node_created', 'reservations', ['node_id', 'created_at'])
    op.add_column('api_keys', sa.Column('approver', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column('api_keys', 'approver')
    op.drop_index('ix_reservations_node_created', table_name='reservations')
    op.drop_column('nodes', 'units_per_hour')
