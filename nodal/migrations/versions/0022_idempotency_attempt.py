"""an Idempotency-Key's claim names the run that holds it (a route records its answer with its effect, and only
the run holding the claim may)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


revision: str = '0022'
down_revision: Union[str, Sequence[str], None] = '0021'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Claims taken before this have no attempt: they are answered already, or free again after a minute.
    op.add_column('idempotent_requests',
                  sa.Column('attempt', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column('idempotent_requests', 'attempt')
