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
                      buffer_pct: float = 0.0) -> int:
    """What one channel may take from the common pool."""
    return max(available_to_sell(on_hand, reserved, safety_stock) - channel_buffer(on_hand, buffer_units, buffer_pct), 0)


def channel_ats_sql(units: str = ":buffer_units", pct: str = ":buffer_pct") -> str:
    """The same for SQL, with the buffer taken from bind parameters or from columns."""
    return (f"GREATEST(on_hand - reserved - safety_stock - {units}"
            f" - CAST(CEIL(on_hand * CAST({pct} AS numeric) / 100) AS integer), 0)")


CHANNEL_ATS_SQL = channel_ats_sql()


def stock_level(available: int, low_threshold: int) -> str:
    """Customer-facing stock message: ``in_stock``, ``low`` (at or below the threshold) or ``out``."""
    if available <= 0:
        return "out"
    return "low" if available <= low_threshold else "in_stock"
