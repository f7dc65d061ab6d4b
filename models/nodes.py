"""A network node as the pure core sees it: routing chooses among them, promise dates what they ship.

Plain data shared by routing/ and promise/ (neither imports the other for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    type: str
    lat: float
    lon: float
    capabilities: frozenset[str]
    enabled: bool = True
    handling_cost: float = 0.0  # per unit picked and packed at this node
    remaining_units: Optional[int] = None  # today's capacity left; None = unlimited
    remaining_orders: Optional[int] = None  # fulfillments it can still take today; None = unlimited
    processing_minutes: int = 120
    cutoff_time: str = "15:00"
    timezone: str = "UTC"
    closed_weekdays: frozenset[int] = frozenset()  # 0 = Monday
    holidays: frozenset[str] = frozenset()  # ISO dates
    hours: Optional[tuple[str, str]] = None  # opening hours ("09:00", "21:00") local; None: processing runs round the clock
    same_day_cutoff: str = "14:00"  # same-day orders must be ready by this local time
    waves: tuple[str, ...] = ()  # local "HH:MM" times work is released in (calendar.waves), when an order asks for waves
    ships_whole: Optional[str] = None  # "case" | "pallet": ships only whole ones of SKUs that have that pack size
