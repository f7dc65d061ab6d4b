"""units of measure: a SKU's pack sizes (case, pallet), the nodes that ship only whole ones, and the unit each
order line was ordered in (its qty and counters stay in eaches); payment terms: orders on account; waves: the
wave a fulfillment was released in

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '0025'
down_revision: Union[str, Sequence[str], None] = '0024'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('skus', sa.Column('pack_sizes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='{}'))
    op.add_column('nodes', sa.Column('ships_whole', sa.String(length=16), nullable=True))
    op.add_column('order_lines', sa.Column('uom', sa.String(length=16), nullable=False, server_default='each'))
    op.add_column('order_lines', sa.Column('pack', sa.Integer(), nullable=False, server_default='1'))
    # Orders on account (customer.account terms, e.g. net30): the customer's open balance is summed over them.
    op.add_column('orders', sa.Column('credit_terms', sa.String(length=16), nullable=True))
    # Waves: the wave a fulfillment was released in (its node's pick list for that wave).
    op.add_column('fulfillments', sa.Column('wave', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_fulfillments_node_wave', 'fulfillments', ['node_id', 'wave'],
                    postgresql_where=sa.text('wave IS NOT NULL'))
    op.create_index('ix_orders_customer_on_account', 'orders', ['customer_id'],
                    postgresql_where=sa.text('credit_terms IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_orders_customer_on_account', table_name='orders')
    op.drop_index('ix_fulfillments_node_wave', table_name='fulfillments')
    op.drop_column('fulfillments', 'wave')
    op.drop_column('orders', 'credit_terms')
    op.drop_column('order_lines', 'pack')
    op.drop_column('order_lines', 'uom')
    op.drop_column('nodes', 'ships_whole')
    op.drop_column('skus', 'pack_sizes')
