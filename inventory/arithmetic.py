"""Available-to-sell, in one place: the Python function and the SQL expression say the same thing."""

from __future__ import annotations


def available_to_sell(on_hand: int, reserved: int, safety_stock: int) -> int:
    return max(on_hand - reserved - safety_stock, 0)


# The same rule for queries over inventory_positions (alias-free column names).
ATS_SQL = "GREATEST(on_hand - reserved - safety_stock, 0)"


def stock_level(available: int, low_threshold: int) -> str:
    """Customer-facing stock message: ``in_stock``, ``low`` (at or below the threshold) or ``out``."""
    if available <= 0:
        return "out"
    return "low" if available <= low_threshold else "in_stock"
