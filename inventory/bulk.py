"""Bulk import of stock positions from CSV (``node,sku,on_hand[,safety_stock]``) with COPY.

The file is streamed to PostgreSQL as it is and parsed there (COPY ... FORMAT csv into a typed staging
table whose constraints reject negative or non-numeric counts with the file's line number). The whole
file is one transaction: a malformed line, a duplicate position, an unknown node or SKU rejects the file
with its line number and nothing is imported. Changed positions get a ledger entry each.

Positions are written SKU by SKU, so the rows of one SKU across the network share heap pages: reading a
SKU's availability touches a few pages, not one per node (see bench/README.md).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import psycopg
from psycopg import errors

REQUIRED = ["node", "sku", "on_hand"]
CHUNK = 1 << 20


class ImportRejected(Exception):
    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


@dataclass
class ImportResult:
    rows: int
    changed: int
    created: int
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went, step by step


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")
_COLUMN_NAMES = {"node_id": "node", "sku": "sku", "on_hand": "on_hand", "safety_stock": "safety_stock"}


def _rejection(e: psycopg.Error, fields: int) -> ImportRejected:
    """Say what COPY refused in the file's terms (line numbers count the header as line 1)."""
    m = _CONTEXT.search(e.diag.context or "")
    line = int(m.group(1)) if m else 0
    column = _COLUMN_NAMES.get((m.group(2) if m else None) or e.diag.column_name or "", "")
    constraint = e.diag.constraint_name or ""
    if isinstance(e, errors.InvalidTextRepresentation):
        return ImportRejected(line, f"{column} must be a whole number, got {e.diag.message_primary.split(': ', 1)[-1]}")
    if isinstance(e, errors.NumericValueOutOfRange):
        return ImportRejected(line, f"{column} is out of range")
    if isinstance(e, errors.CheckViolation):
        column = next((c for c in _COLUMN_NAMES if c in constraint), column)
        return ImportRejected(line, f"{_COLUMN_NAMES.get(column, column)} must not be negative")
    if isinstance(e, errors.NotNullViolation):
        return ImportRejected(line, f"{column or 'node, sku and on_hand'} must not be empty")
    if isinstance(e, errors.BadCopyFileFormat):
        if (e.diag.context or "").endswith(': ""'):
            return ImportRejected(line, "empty line")
        return ImportRejected(line, f"expected {fields} fields: {e.diag.message_primary}")
    return ImportRejected(line, e.diag.message_primary or str(e))


def _first_line_of(conn: psycopg.Connection, where: str, params: tuple = ()) -> tuple:
    """The first data row matching ``where``, with its line in the file (rows were copied in file order)."""
    return conn.execute(
        "SELECT n + 1, node_id, sku FROM (SELECT node_id, sku, row_number() OVER (ORDER BY ctid) AS n,"
        " count(*) OVER (PARTITION BY node_id, sku ORDER BY ctid) AS seen FROM import_rows) r"
        f" WHERE {where} ORDER BY n LIMIT 1", params).fetchone()


def _diagnose_unknown(conn: psycopg.Connection) -> ImportRejected:
    for table, column, what in (("nodes", "node_id", "node"), ("skus", "sku", "sku")):
        bad = conn.execute(f"SELECT i.{column} FROM import_rows i WHERE NOT EXISTS"
                           f" (SELECT 1 FROM {table} t WHERE t.{column} = i.{column}) LIMIT 1").fetchone()
        if bad is not None:
            line = _first_line_of(conn, f"{column} = %s", (bad[0],))
            return ImportRejected(line[0], f"unknown {what} {bad[0]}")
    return ImportRejected(0, "rows without a node or sku")


# Positions the network does not have yet, SKU by SKU; safety stock from the file, else the defaults for
# the node type and SKU category (the larger), as DEFAULT_SAFETY_SQL computes them.
_INSERT_NEW = """
INSERT INTO inventory_positions (node_id, sku, on_hand, reserved, safety_stock, safety_stock_override, as_of, updated_at)
SELECT i.node_id, i.sku, i.on_hand, 0,
       COALESCE(i.safety_stock, GREATEST(COALESCE(dc.qty, 0), COALESCE(dn.qty, 0))), i.safety_stock, now(), now()
FROM import_rows i JOIN nodes n ON n.node_id = i.node_id JOIN skus s ON s.sku = i.sku
LEFT JOIN safety_stock_defaults dc ON dc.scope = 'category' AND dc.key = s.category
LEFT JOIN safety_stock_defaults dn ON dn.scope = 'node_type' AND dn.key = n.type
WHERE NOT EXISTS (SELECT 1 FROM inventory_positions p WHERE p.sku = i.sku AND p.node_id = i.node_id)
ORDER BY i.sku, i.node_id
"""

# Positions already there: the count replaces on hand (reservations stay); a position's own safety stock
# override stays unless the file gives one. An import is a count as of now: older snapshots arriving
# later are ignored.
_UPDATE_EXISTING = """
UPDATE inventory_positions p SET
  on_hand = i.on_hand,
  safety_stock = COALESCE(i.safety_stock, p.safety_stock),
  safety_stock_override = COALESCE(i.safety_stock, p.safety_stock_override),
  as_of = now(), updated_at = now()
FROM import_rows i WHERE p.sku = i.sku AND p.node_id = i.node_id
"""

_LEDGER = """
INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, actor, at)
SELECT i.node_id, i.sku, i.on_hand - COALESCE(p.on_hand, 0), 0, 'import', %s || ':' || i.node_id || ':' || i.sku,
       %s, now()
FROM import_rows i LEFT JOIN inventory_positions p ON p.sku = i.sku AND p.node_id = i.node_id
WHERE i.on_hand <> COALESCE(p.on_hand, 0)
"""


def import_csv(url: str, path: Path, actor: str = "import",
               progress: Optional[Callable[[int], None]] = None) -> ImportResult:
    with open(path, "rb") as fh:
        header = [h.strip().lower() for h in fh.readline().decode("utf-8-sig").strip().split(",")]
    if header[:3] != REQUIRED or header[3:] not in ([], ["safety_stock"]):
        raise ImportRejected(1, "header must be node,sku,on_hand[,safety_stock]")
    columns = ["node_id", "sku", "on_hand"] + (["safety_stock"] if len(header) == 4 else [])
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    with psycopg.connect(_libpq_url(url)) as conn:
        conn.execute("SET LOCAL work_mem = '64MB'")  # sort and join a million rows in memory
        conn.execute("CREATE TEMP TABLE import_rows (node_id text NOT NULL, sku text NOT NULL,"
                     " on_hand int NOT NULL CHECK (on_hand >= 0), safety_stock int CHECK (safety_stock >= 0))"
                     " ON COMMIT DROP")
        try:
            with conn.cursor().copy(f"COPY import_rows ({', '.join(columns)}) FROM STDIN"
                                    " (FORMAT csv, HEADER true)") as copy, open(path, "rb") as fh:
                chunk = fh.read(CHUNK)
                while chunk:
                    following = fh.read(CHUNK)
                    if not following:  # blank lines at the very end are not rows; keep the file's line ending
                        body = chunk.rstrip(b"\r\n")
                        tail = chunk[len(body):]
                        chunk = body + (b"\r\n" if tail.startswith(b"\r\n") else tail[:1])
                    copy.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    chunk = following
        except psycopg.Error as e:
            raise _rejection(e, len(columns)) from None
        lap("copy")
        rows = conn.execute("SELECT count(*) FROM import_rows").fetchone()[0]
        conn.execute("ANALYZE import_rows")
        lap("count")
        repeated = conn.execute("SELECT 1 FROM import_rows GROUP BY sku, node_id HAVING count(*) > 1 LIMIT 1").fetchone()
        if repeated is not None:
            line = _first_line_of(conn, "seen = 2")
            raise ImportRejected(line[0], f"{line[1]}/{line[2]} appears twice")
        lap("checks")
        # One ledger entry per changed position; the import's own id makes each event id unique.
        changed = conn.execute(_LEDGER, (f"import:{uuid.uuid4().hex[:12]}", actor)).rowcount
        lap("ledger")
        updated = conn.execute(_UPDATE_EXISTING).rowcount
        created = conn.execute(_INSERT_NEW).rowcount
        lap("positions")
        if updated + created != rows:
            raise _diagnose_unknown(conn)  # the joins dropped rows whose node or sku does not exist
        return ImportResult(rows=rows, changed=changed, created=created, seconds=seconds)
