"""When a node can ship, and when the customer gets it.

v1 model: work released at ``at`` is ready after the node's processing time; it ships that day at
the node's cutoff if ready by then and the node is open, else at the cutoff of the next open day.
Transit is by distance band and service; pickup and curbside are ready when processing is done.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from models.status import DeliveryMethod
from routing.model import NodeInfo

# (max km, business days) per service; beyond the last band, the last value.
TRANSIT_BANDS = {
    DeliveryMethod.ship_standard: [(150, 1), (800, 2), (1600, 3), (3000, 4), (float("inf"), 5)],
    DeliveryMethod.ship_express: [(1600, 1), (float("inf"), 2)],
}


def _is_open(node: NodeInfo, day: datetime) -> bool:
    return day.weekday() not in node.closed_weekdays and day.date().isoformat() not in node.holidays


def ship_by(node: NodeInfo, at: datetime) -> datetime:
    tz = ZoneInfo(node.timezone)
    ready = (at + timedelta(minutes=node.processing_minutes)).astimezone(tz)
    hh, mm = (int(x) for x in node.cutoff_time.split(":"))
    day = ready
    for _ in range(30):  # a node closed for a month is not a candidate worth a date
        cutoff = datetime.combine(day.date(), time(hh, mm), tzinfo=tz)
        if _is_open(node, day) and ready <= cutoff:
            return cutoff.astimezone(timezone.utc)
        day = datetime.combine(day.date() + timedelta(days=1), time(0, 0), tzinfo=tz)
        ready = max(ready, day)
    return (ready + timedelta(days=30)).astimezone(timezone.utc)


def release_start(node: NodeInfo, release_date: date) -> datetime:
    """A preorder goes to the node when its release day starts in the node's time zone, to ship that day."""
    return datetime.combine(release_date, time(0, 0), tzinfo=ZoneInfo(node.timezone)).astimezone(timezone.utc)


def transit_days(method: DeliveryMethod, distance_km: float) -> int:
    if method in (DeliveryMethod.pickup, DeliveryMethod.curbside, DeliveryMethod.same_day):
        return 0
    for limit, days in TRANSIT_BANDS[method]:
        if distance_km <= limit:
            return days
    return TRANSIT_BANDS[method][-1][1]


def promised_by(node: NodeInfo, method: DeliveryMethod, distance_km: float, at: datetime) -> datetime:
    if method in (DeliveryMethod.pickup, DeliveryMethod.curbside):
        return (at + timedelta(minutes=node.processing_minutes)).astimezone(timezone.utc)
    shipped = ship_by(node, at)
    days = transit_days(method, distance_km)
    delivered = shipped
    while days > 0:  # carriers deliver Monday to Saturday in v1
        delivered += timedelta(days=1)
        if delivered.weekday() != 6:
            days -= 1
    # Promise the end of the delivery day.
    return datetime.combine(delivered.date(), time(23, 59), tzinfo=timezone.utc)
