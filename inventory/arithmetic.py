"""Available-to-sell, in one place: the Python function and the SQL expression say the same thing."""

from __future__ import annotations

import math


def available_to_sell(on_hand: int, reserved: int, safety_stock: int) -> int:
    return max(on_hand - reserved - safety_stock, 0)


# The same rule for queries over inventory_positions (alias-free column names).
ATS_SQL = "GREATEST(on_hand - reserved - safety_stock, 0)"


def channel_buffer(on_hand: int, buffer_units: int, buffer_pct: float) -> int:
    """Units of a position a channel must leave for the others: fixed units plus a share of on hand."""
    return buffer_units + math.ceil(on_hand * buffer_pct / 100)


def channel_available(on_hand: int, reserved: int, safety_stock: int, buffer_units: int = 0,
                      buffer_pct: float = 0.0, protected_for_others: int = 0) -> int:
    """What one customer of one channel may take from the common pool.

    ``protected_for_others`` is stock protected for customer tiers other than this customer's: a nested
    protection level, so the tier itself can buy every unit and everyone else only what lies above it.
    """
    return max(available_to_sell(on_hand, reserved, safety_stock)
               - channel_buffer(on_hand, buffer_units, buffer_pct) - protected_for_others, 0)


def channel_ats_sql(units: str = ":buffer_units", pct: str = ":buffer_pct", protected: str = "0") -> str:
    """The same for SQL, with the buffer and the others' protection from bind parameters or expressions."""
    return (f"GREATEST(on_hand - reserved - safety_stock - {units}"
            f" - CAST(CEIL(on_hand * CAST({pct} AS numeric) / 100) AS integer) - {protected}, 0)")


def protected_for_others_sql(node: str, sku: str, tier: str) -> str:
    """Units at a position protected for tiers other than ``tier`` (SQL expressions as arguments)."""
    return (f"COALESCE((SELECT SUM(ps.qty) FROM protected_stock ps WHERE ps.node_id = {node} AND ps.sku = {sku}"
            f" AND ps.tier IS DISTINCT FROM {tier}), 0)")


def protected_for_others_by_position_sql(skus: str, tier: str) -> str:
    """The same per position of these SKUs as a table (node_id, sku, qty) to join: one pass instead of a
    probe per row when many positions are read at once."""
    return (f"SELECT node_id, sku, SUM(qty) AS qty FROM protected_stock WHERE sku = ANY({skus})"
            f" AND tier IS DISTINCT FROM {tier} GROUP BY node_id, sku")



def stock_level(available: int, low_threshold: int) -> str:
    """Customer-facing stock message: ``in_stock``, ``low`` (at or below the threshold) or ``out``."""
    if available <= 0:
        return "out"
    return "low" if available <= low_threshold else "in_stock"


def stock_level_sql(available: str, low_threshold: str) -> str:
    """The same message in SQL (expressions as arguments)."""
    return (f"CASE WHEN {available} <= 0 THEN 'out' WHEN {available} <= {low_threshold} THEN 'low'"
            " ELSE 'in_stock' END")
