"""KPI facts: an order's first promised date and a cancelled order's cause; when a fulfillment was picked

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0027'
down_revision: Union[str, Sequence[str], None] = '0026'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('first_promised_by', sa.DateTime(timezone=True), nullable=True))
    op.add_column('orders', sa.Column('cancel_cause', sa.String(length=32), nullable=True))
    op.add_column('fulfillments', sa.Column('picked_at', sa.DateTime(timezone=True), nullable=True))
    # Orders promised before this release: their first promise is the one they have (re-promised ones are not told
    # apart; new orders keep their first).
    op.execute("UPDATE orders SET first_promised_by = promised_by WHERE promised_by IS NOT NULL")


def downgrade() -> None:
    op.drop_column('fulfillments', 'picked_at')
    op.drop_column('orders', 'cancel_cause')
    op.drop_column('orders', 'first_promised_by')
