"""Carrier services the promise can use: transit days by distance zone, pickup and delivery days, holidays.

Two simulated carriers with different zones and calendars, so the promise is a real choice: the
earliest delivery among the services that serve a delivery method. The carrier adapter labels and
rates the same carrier and service names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import holidays as holiday_calendars

from models.status import DeliveryMethod

MON_FRI = frozenset(range(5))
MON_SAT = frozenset(range(6))
TUE_SAT = frozenset(range(1, 6))

# The national holidays carriers close on (they deliver on the others: MLK, Presidents', Columbus...).
CARRIER_CLOSED = ("New Year's Day", "Memorial Day", "Independence Day", "Labor Day", "Thanksgiving",
                  "Christmas Day")


@dataclass(frozen=True)
class CarrierService:
    carrier: str
    service: str  # ground | express
    zones: tuple[tuple[float, int], ...]  # (up to km, transit days); beyond the last zone, its days
    pickup_weekdays: frozenset[int]  # 0 = Monday: the days the carrier collects from nodes
    delivery_weekdays: frozenset[int]

    def transit_days(self, distance_km: float) -> int:
        for limit, days in self.zones:
            if distance_km <= limit:
                return days
        return self.zones[-1][1]


SERVICES: dict[DeliveryMethod, tuple[CarrierService, ...]] = {
    DeliveryMethod.ship_standard: (
        CarrierService("ups", "ground", ((150, 1), (800, 2), (1600, 3), (3000, 4), (float("inf"), 5)),
                       MON_FRI, MON_SAT),
        CarrierService("fedex", "ground", ((250, 1), (700, 2), (1400, 3), (2400, 4), (float("inf"), 5)),
                       MON_SAT, TUE_SAT),
    ),
    DeliveryMethod.ship_express: (
        CarrierService("ups", "express", ((1600, 1), (float("inf"), 2)), MON_FRI, MON_FRI),
        CarrierService("fedex", "express", ((2400, 1), (float("inf"), 2)), MON_FRI, MON_SAT),
    ),
}
CARRIERS = sorted({s.carrier for services in SERVICES.values() for s in services})


@lru_cache(maxsize=64)
def national_closures(country: str, year: int) -> frozenset[str]:
    """ISO dates in a year the carriers do not pick up or deliver (observed days included)."""
    return frozenset(d.isoformat() for d, name in holiday_calendars.country_holidays(country, years=year).items()
                     if name.startswith(CARRIER_CLOSED))


@dataclass(frozen=True)
class CarrierCalendar:
    """Days each carrier is closed: the national holidays of its country, plus its own closures (storms,
    peak-season embargoes) kept in Postgres (PUT /carriers/{carrier}/calendar)."""

    country: str = "US"
    closures: dict[str, frozenset[str]] = field(default_factory=dict)  # carrier → ISO dates

    def is_closed(self, carrier: str, day: date) -> bool:
        iso = day.isoformat()
        return iso in national_closures(self.country, day.year) or iso in self.closures.get(carrier, frozenset())

    def picks_up(self, service: CarrierService, day: date) -> bool:
        return day.weekday() in service.pickup_weekdays and not self.is_closed(service.carrier, day)

    def delivers(self, service: CarrierService, day: date) -> bool:
        return day.weekday() in service.delivery_weekdays and not self.is_closed(service.carrier, day)


DEFAULT_CALENDAR = CarrierCalendar()
