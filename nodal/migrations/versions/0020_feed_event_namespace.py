"""ledger event ids of feeds in their node's namespace (feed:{node}:{id}), apart from the system's own

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02

"""
from typing import Sequence, Union

from alembic import op
import sqlmodel  # noqa: F401


revision: str = '0020'
down_revision: Union[str, Sequence[str], None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Room for the namespace; adjustments and inspections already applied move into it, so a feed that
    re-sends one after the upgrade still finds it a duplicate (their actor is the feeding key, never
    'system'; snapshots keep their own snapshot: ids)."""
    op.alter_column('inventory_ledger', 'event_id', type_=sqlmodel.sql.sqltypes.AutoString(length=400),
                    existing_type=sqlmodel.sql.sqltypes.AutoString(length=200), existing_nullable=True)
    op.execute("UPDATE inventory_ledger SET event_id = 'feed:' || node_id || ':' || event_id"
               " WHERE event_id IS NOT NULL AND actor <> 'system' AND reason <> 'snapshot'"
               " AND event_id NOT LIKE 'feed:%'")


def downgrade() -> None:
    op.execute("UPDATE inventory_ledger SET event_id = substr(event_id, length('feed:' || node_id || ':') + 1)"
               " WHERE event_id LIKE 'feed:%'")
    op.alter_column('inventory_ledger', 'event_id', type_=sqlmodel.sql.sqltypes.AutoString(length=200),
                    existing_type=sqlmodel.sql.sqltypes.AutoString(length=400), existing_nullable=True)
