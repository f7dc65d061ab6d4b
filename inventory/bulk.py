"""Bulk import of stock positions from CSV (``node,sku,on_hand[,safety_stock]``) with COPY.

The whole file is one transaction: any malformed line, unknown node or unknown SKU rejects the file
with its line number and nothing is imported. Changed positions get a ledger entry each.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import psycopg

from inventory.service import DEFAULT_SAFETY_SQL

REQUIRED = ["node", "sku", "on_hand"]


class ImportRejected(Exception):
    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


@dataclass
class ImportResult:
    rows: int
    changed: int
    created: int


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _int(value: str, line: int, column: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ImportRejected(line, f"{column} must be a whole number, got {value!r}")
    if n < 0:
        raise ImportRejected(line, f"{column} must not be negative")
    return n


def import_csv(url: str, path: Path, actor: str = "import",
               progress: Optional[Callable[[int], None]] = None) -> ImportResult:
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}:{size}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    consumed = [0]

    def counted(lines):
        for text_line in lines:
            consumed[0] += len(text_line)
            yield text_line

    with psycopg.connect(_libpq_url(url)) as conn, open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(counted(fh))
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:3] != REQUIRED or header[3:] not in ([], ["safety_stock"]):
            raise ImportRejected(1, "header must be node,sku,on_hand[,safety_stock]")
        with_safety = len(header) == 4
        conn.execute("CREATE TEMP TABLE import_rows (line int, node_id text, sku text, on_hand int,"
                     " safety_stock int) ON COMMIT DROP")
        rows, seen_bytes = 0, 0
        with conn.cursor().copy("COPY import_rows (line, node_id, sku, on_hand, safety_stock) FROM STDIN") as copy:
            for values in reader:
                line = reader.line_num
                if not values or values == [""]:
                    continue
                if len(values) != len(header):
                    raise ImportRejected(line, f"expected {len(header)} fields, got {len(values)}")
                node, sku = values[0].strip(), values[1].strip()
                if not node or not sku:
                    raise ImportRejected(line, "node and sku must not be empty")
                on_hand = _int(values[2].strip(), line, "on_hand")
                safety = _int(values[3].strip(), line, "safety_stock") if with_safety and values[3].strip() else None
                copy.write_row((line, node, sku, on_hand, safety))
                rows += 1
                if progress is not None and rows % 5000 == 0:
                    progress(consumed[0] - seen_bytes)
                    seen_bytes = consumed[0]
        conn.execute("CREATE INDEX ON import_rows (node_id, sku)")
        conn.execute("ANALYZE import_rows")
        checks = [
            ("SELECT i.line, i.node_id, i.sku FROM import_rows i JOIN import_rows j ON i.node_id = j.node_id"
             " AND i.sku = j.sku AND j.line < i.line ORDER BY i.line LIMIT 1", "{1}/{2} appears twice"),
            ("SELECT i.line, i.node_id FROM import_rows i LEFT JOIN nodes n ON n.node_id = i.node_id"
             " WHERE n.node_id IS NULL ORDER BY i.line LIMIT 1", "unknown node {1}"),
            ("SELECT i.line, i.sku FROM import_rows i LEFT JOIN skus s ON s.sku = i.sku"
             " WHERE s.sku IS NULL ORDER BY i.line LIMIT 1", "unknown sku {1}"),
        ]
        for sql, message in checks:
            bad = conn.execute(sql).fetchone()
            if bad is not None:
                raise ImportRejected(bad[0], message.format(*bad))
        changed = conn.execute(
            "INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, actor, at)"
            " SELECT i.node_id, i.sku, i.on_hand - COALESCE(p.on_hand, 0), 0, 'import',"
            " %s || ':' || i.node_id || ':' || i.sku, %s, now()"
            " FROM import_rows i LEFT JOIN inventory_positions p ON p.node_id = i.node_id AND p.sku = i.sku"
            " WHERE i.on_hand <> COALESCE(p.on_hand, 0) ON CONFLICT (event_id) DO NOTHING",
            (f"import:{digest}", actor),
        ).rowcount
        existing = conn.execute(
            "SELECT COUNT(*) FROM import_rows i JOIN inventory_positions p USING (node_id, sku)").fetchone()[0]
        conn.execute(
            "INSERT INTO inventory_positions (node_id, sku, on_hand, reserved, safety_stock, safety_stock_override,"
            " updated_at) SELECT node_id, sku, on_hand, 0, COALESCE(safety_stock, 0), safety_stock, now()"
            " FROM import_rows ON CONFLICT (node_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand,"
            " safety_stock = COALESCE(EXCLUDED.safety_stock_override, inventory_positions.safety_stock),"
            " safety_stock_override = COALESCE(EXCLUDED.safety_stock_override, inventory_positions.safety_stock_override),"
            # An import is a count as of now: older snapshots arriving later are ignored.
            " as_of = now(), updated_at = now()",
        )
        # Positions without their own safety stock take the defaults.
        conn.execute(DEFAULT_SAFETY_SQL + " AND (p.node_id, p.sku) IN"
                     " (SELECT node_id, sku FROM import_rows WHERE safety_stock IS NULL)")
        if progress is not None:
            progress(size - seen_bytes)
        return ImportResult(rows=rows, changed=changed, created=rows - existing)
