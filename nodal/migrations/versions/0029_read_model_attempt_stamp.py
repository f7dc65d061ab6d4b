"""The attempt of the order's workflow that wrote an order row or a timeline entry: a workflow task Temporal runs
again (its completion refused, its worker gone) writes over what the discarded attempt's local activities wrote.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0029'
down_revision: Union[str, Sequence[str], None] = '0028'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    for table in ("orders", "timeline_events"):
        op.add_column(table, sa.Column("stamp", sa.BigInteger(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    for table in ("orders", "timeline_events"):
        op.drop_column(table, "stamp")
