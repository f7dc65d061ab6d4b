"""inventory positions keyed SKU first, with free space per page

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

Availability reads one SKU across the whole network; with the key (sku, node_id), imports writing SKU by
SKU and a fillfactor leaving room for in-place (HOT) updates, those rows share a few heap pages instead of
one page per node. The key (sku, node_id) also serves lookups by SKU, so the separate SKU index goes and
an index by node takes its place (a node's own positions, snapshots).
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_constraint('inventory_positions_pkey', 'inventory_positions', type_='primary')
    op.create_primary_key('inventory_positions_pkey', 'inventory_positions', ['sku', 'node_id'])
    op.drop_index('ix_inventory_positions_sku', table_name='inventory_positions')
    op.create_index('ix_inventory_positions_node_id', 'inventory_positions', ['node_id'], unique=False)
    op.execute("ALTER TABLE inventory_positions SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("ALTER TABLE inventory_positions RESET (fillfactor)")
    op.drop_index('ix_inventory_positions_node_id', table_name='inventory_positions')
    op.create_index('ix_inventory_positions_sku', 'inventory_positions', ['sku'], unique=False)
    op.drop_constraint('inventory_positions_pkey', 'inventory_positions', type_='primary')
    op.create_primary_key('inventory_positions_pkey', 'inventory_positions', ['node_id', 'sku'])
