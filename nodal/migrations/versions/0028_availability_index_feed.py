"""The availability index's change feed: every inventory position carries the sequence number of its last change,
and each committed change is announced (LISTEN nodal_positions) with the position's new figures; network, protected
stock and supply edits are announced on nodal_network by table name.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0028'
down_revision: Union[str, Sequence[str], None] = '0027'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Tables whose edits change what a quote or an availability answer may use (besides the positions themselves).
NETWORK_TABLES = ("nodes", "service_areas", "postal_codes", "skus", "channel_views", "routing_rules",
                  "carrier_closures", "bid_prices", "protected_stock", "incoming_supply", "supply_claims")

# Row by row, before the write: the position's change number. Rows are locked while written, so for one position
# the numbers rise in commit order, and a reader keeps the figures with the highest number it has seen.
STAMP = """
CREATE FUNCTION nodal_position_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.change_seq := nextval('inventory_change_seq');
  RETURN NEW;
END $$
"""

# Per statement, after it: the changed positions' figures in notifications of up to 30 positions (a payload has
# 8,000 bytes at most; 30 positions of 64-character ids fit in ~5,700). Delivered at commit, in commit order, to
# every listening API process. A statement too big to announce (a bulk import) says "resync": readers reload.
ANNOUNCE = """
CREATE FUNCTION nodal_positions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  chunk text;
BEGIN
  IF (SELECT count(*) FROM changed_rows) > 20000 THEN
    PERFORM pg_notify('nodal_positions', 'resync');
    RETURN NULL;
  END IF;
  FOR chunk IN
    SELECT CAST(json_build_object('at', extract(epoch FROM clock_timestamp()), 'rows',
                json_agg(json_build_array(r.change_seq, r.node_id, r.sku, r.on_hand, r.reserved, r.safety_stock)))
                AS text)
    FROM (SELECT c.*, row_number() OVER () - 1 AS i FROM changed_rows c) r GROUP BY r.i / 30
  LOOP
    IF octet_length(chunk) > 7900 THEN
      PERFORM pg_notify('nodal_positions', 'resync');
    ELSE
      PERFORM pg_notify('nodal_positions', chunk);
    END IF;
  END LOOP;
  RETURN NULL;
END $$
"""

ANNOUNCE_TRUNCATE = """
CREATE FUNCTION nodal_positions_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('nodal_positions', 'resync');
  RETURN NULL;
END $$
"""

NETWORK = """
CREATE FUNCTION nodal_network_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('nodal_network', TG_TABLE_NAME);
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute("CREATE SEQUENCE inventory_change_seq")
    op.add_column('inventory_positions', sa.Column('change_seq', sa.BigInteger(), server_default=sa.text('0'),
                                                   nullable=False))
    op.execute(STAMP)
    op.execute("CREATE TRIGGER inventory_positions_stamp BEFORE INSERT OR UPDATE ON inventory_positions"
               " FOR EACH ROW EXECUTE FUNCTION nodal_position_stamp()")
    op.execute(ANNOUNCE)
    for verb in ("INSERT", "UPDATE"):
        op.execute(f"CREATE TRIGGER inventory_positions_{verb.lower()}_index AFTER {verb} ON inventory_positions"
                   " REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION nodal_positions_changed()")
    op.execute(ANNOUNCE_TRUNCATE)
    # A deleted position is not in the index's next load; until then readers reload (positions are not deleted
    # by the product, only by hand).
    op.execute("CREATE TRIGGER inventory_positions_delete_index AFTER DELETE OR TRUNCATE ON inventory_positions"
               " FOR EACH STATEMENT EXECUTE FUNCTION nodal_positions_truncated()")
    op.execute(NETWORK)
    for table in NETWORK_TABLES:
        op.execute(f"CREATE TRIGGER {table}_index AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION nodal_network_changed()")


def downgrade() -> None:
    for table in NETWORK_TABLES:
        op.execute(f"DROP TRIGGER {table}_index ON {table}")
    op.execute("DROP FUNCTION nodal_network_changed()")
    op.execute("DROP TRIGGER inventory_positions_delete_index ON inventory_positions")
    op.execute("DROP FUNCTION nodal_positions_truncated()")
    for verb in ("insert", "update"):
        op.execute(f"DROP TRIGGER inventory_positions_{verb}_index ON inventory_positions")
    op.execute("DROP FUNCTION nodal_positions_changed()")
    op.execute("DROP TRIGGER inventory_positions_stamp ON inventory_positions")
    op.execute("DROP FUNCTION nodal_position_stamp()")
    op.drop_column('inventory_positions', 'change_seq')
    op.execute("DROP SEQUENCE inventory_change_seq")
