"""store fulfillments: a fulfillment's kind and method, its promised date, a transfer's destination store, and a
pickup's counter times (ready, held until, the customer's arrival, collected)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


revision: str = '0023'
down_revision: Union[str, Sequence[str], None] = '0022'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TIMES = ('promised_by', 'ready_at', 'hold_until', 'arrived_at', 'delivered_at')


def upgrade() -> None:
    op.add_column('fulfillments', sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                            server_default='delivery'))
    op.add_column('fulfillments', sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
    for name in _TIMES:
        op.add_column('fulfillments', sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column('fulfillments', sa.Column('to_node_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_index('ix_fulfillments_to_node_status', 'fulfillments', ['to_node_id', 'status'], unique=False)
    op.add_column('fulfillments', sa.Column('bay', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
    op.add_column('fulfillments', sa.Column('arrival_note', sqlmodel.sql.sqltypes.AutoString(length=200),
                                            nullable=True))


def downgrade() -> None:
    op.drop_index('ix_fulfillments_to_node_status', table_name='fulfillments')
    for name in ('arrival_note', 'bay', 'to_node_id', *reversed(_TIMES), 'method', 'kind'):
        op.drop_column('fulfillments', name)
