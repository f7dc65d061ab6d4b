"""When a node can ship, and when the customer gets it.

Work reaching a node at ``at`` is ready after the node's processing time, counted inside its opening
hours when it has them (stores). A parcel leaves at the node's daily cutoff, in the node's time zone, on
the first day the node is open, the carrier collects and the work is ready; the carrier then takes its
zone's transit days, counted on its delivery days and around its holidays. The promise is the earliest
delivery among the carrier services for the method. Pickup and curbside are promised when the order is
ready in store hours; same day only before the node's same-day cutoff.

A B2B order with a requested delivery date later than the earliest is scheduled backwards: it ships on
the last day that still arrives by the requested date, and reaches the node on that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator, Optional
from zoneinfo import ZoneInfo

from models.nodes import NodeInfo
from models.status import COUNTER_METHODS, DeliveryMethod
from promise.carriers import DEFAULT_CALENDAR, SERVICES, CarrierCalendar, CarrierService

HORIZON_DAYS = 60  # a node or carrier closed for longer is not a candidate worth a date
SAME_DAY_BY = time(21, 0)  # same-day deliveries arrive by this local time
COUNTER = COUNTER_METHODS


@dataclass(frozen=True)
class Quote:
    promised_by: datetime
    ship_by: Optional[datetime] = None  # the cutoff the node must ship by (None: collected in store)
    carrier: Optional[str] = None
    service: Optional[str] = None
    hold_until: Optional[datetime] = None  # scheduled backwards: not released to the node before this


def _hhmm(value: str) -> time:
    hh, mm = (int(x) for x in value.split(":"))
    return time(hh, mm)


def _open(node: NodeInfo, day: date) -> bool:
    return day.weekday() not in node.closed_weekdays and day.isoformat() not in node.holidays


def _day_start(tz: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def ready_at(node: NodeInfo, at: datetime) -> datetime:
    """When work reaching the node at ``at`` is done: processing counts only while the node is open."""
    tz = ZoneInfo(node.timezone)
    if node.hours is None:
        return (at + timedelta(minutes=node.processing_minutes)).astimezone(timezone.utc)
    opens, closes = _hhmm(node.hours[0]), _hhmm(node.hours[1])
    t, left = at.astimezone(tz), timedelta(minutes=node.processing_minutes)
    for _ in range(HORIZON_DAYS):
        day = t.date()
        if _open(node, day):
            start = max(t, datetime.combine(day, opens, tzinfo=tz))
            end = datetime.combine(day, closes, tzinfo=tz)
            if start < end:
                work = min(left, end - start)
                left -= work
                if left <= timedelta(0):
                    return (start + work).astimezone(timezone.utc)
        t = _day_start(tz, day + timedelta(days=1))
    return (t + left).astimezone(timezone.utc)


def ship_days(node: NodeInfo, at: datetime, service: Optional[CarrierService] = None,
              calendar: CarrierCalendar = DEFAULT_CALENDAR) -> Iterator[datetime]:
    """Every cutoff, in order, at which work reaching the node at ``at`` can leave with the carrier."""
    tz = ZoneInfo(node.timezone)
    ready = ready_at(node, at).astimezone(tz)
    cutoff_time = _hhmm(node.cutoff_time)
    day = ready.date()
    for _ in range(HORIZON_DAYS * 2):
        cutoff = datetime.combine(day, cutoff_time, tzinfo=tz)
        if ready <= cutoff and _open(node, day) and (service is None or calendar.picks_up(service, day)):
            yield cutoff.astimezone(timezone.utc)
        day += timedelta(days=1)


def ship_by(node: NodeInfo, at: datetime, service: Optional[CarrierService] = None,
            calendar: CarrierCalendar = DEFAULT_CALENDAR) -> datetime:
    return next(ship_days(node, at, service, calendar), at + timedelta(days=HORIZON_DAYS))


def next_wave(node: NodeInfo, at: datetime) -> Optional[datetime]:
    """The node's first wave at or after ``at`` (its calendar.waves, local times, on its open days); None for a
    node that does not work in waves."""
    if not node.waves:
        return None
    tz = ZoneInfo(node.timezone)
    day = at.astimezone(tz).date()
    for _ in range(HORIZON_DAYS):
        if _open(node, day):
            for w in sorted(node.waves):
                start = datetime.combine(day, _hhmm(w), tz)
                if start >= at:
                    return start.astimezone(timezone.utc)
        day += timedelta(days=1)
    return None


def release_start(node: NodeInfo, release_date: date) -> datetime:
    """A preorder goes to the node when its release day starts in the node's time zone, to ship that day."""
    return _day_start(ZoneInfo(node.timezone), release_date).astimezone(timezone.utc)


def delivered_on(service: CarrierService, node: NodeInfo, shipped: datetime, distance_km: float,
                 calendar: CarrierCalendar = DEFAULT_CALENDAR, days: Optional[int] = None) -> date:
    """The day a parcel handed over at ``shipped`` arrives: transit (the zone's days unless given) counted on
    the carrier's delivery days."""
    day = shipped.astimezone(ZoneInfo(node.timezone)).date()
    left = service.transit_days(distance_km) if days is None else days
    for _ in range(HORIZON_DAYS):
        if left <= 0:
            break
        day += timedelta(days=1)
        if calendar.delivers(service, day):
            left -= 1
    return day


# How many delivery days a promise adds to the computed arrival, against late picks and slow transit
# (bench/promise_accuracy.py measures each): none; one day always; or one day only where the risk is
# (a store picking, or three or more days in transit). The product promises with "flat": the only one
# that keeps ≥ 95% of promises in the simulation, at a median slack of one day.
BUFFER_POLICIES = ("none", "flat", "risk")
PRODUCT_BUFFER = "flat"


def buffer_days(policy: str, node: NodeInfo, transit_days: int) -> int:
    if policy == "flat":
        return 1
    if policy == "risk":
        return 1 if node.type != "dc" or transit_days >= 3 else 0
    return 0


def transfer_quote(source: NodeInfo, store: NodeInfo, distance_km: float, at: datetime,
                   calendar: CarrierCalendar = DEFAULT_CALENDAR, buffer: str = "none") -> Optional[Quote]:
    """Ship to store: the source ships to the store by standard service, the store makes it ready on the day it
    arrives (processing in its opening hours). ``ship_by`` is the source's cutoff; the promise is the store's."""
    leg = quote(source, DeliveryMethod.ship_standard, distance_km, at, calendar, buffer=buffer)
    if leg is None:
        return None
    arrives = datetime.combine(leg.promised_by.date(), time(12, 0), tzinfo=ZoneInfo(store.timezone))
    return Quote(ready_at(store, arrives.astimezone(timezone.utc)), ship_by=leg.ship_by, carrier=leg.carrier,
                 service=leg.service)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59), tzinfo=timezone.utc)


def quote(node: NodeInfo, method: DeliveryMethod, distance_km: float, at: datetime,
          calendar: CarrierCalendar = DEFAULT_CALENDAR, requested: Optional[date] = None,
          buffer: str = "none") -> Optional[Quote]:
    """The date this node can keep for this method (None: it cannot serve the method from ``at``)."""
    if method in COUNTER:
        start = at
        if requested is not None:
            start = max(at, release_start(node, requested))
        return Quote(ready_at(node, start), hold_until=start if start > at else None)
    if method == DeliveryMethod.same_day:
        tz = ZoneInfo(node.timezone)
        ready = ready_at(node, at).astimezone(tz)
        today = at.astimezone(tz).date()
        if ready.date() != today or not _open(node, today) or ready.time() > _hhmm(node.same_day_cutoff):
            return None
        return Quote(datetime.combine(today, SAME_DAY_BY, tzinfo=tz).astimezone(timezone.utc),
                     ship_by=ready.astimezone(timezone.utc), carrier="courier", service="same_day")
    best: Optional[Quote] = None
    for service in SERVICES[method]:
        first = next(ship_days(node, at, service, calendar), None)
        if first is None:
            continue
        transit = service.transit_days(distance_km)
        arrives = delivered_on(service, node, first, distance_km, calendar,
                               transit + buffer_days(buffer, node, transit))
        q = Quote(end_of(arrives), first, service.carrier, service.service)
        if requested is not None and requested > arrives:
            q = _backwards(node, at, service, distance_km, calendar, requested, buffer) or q
        if best is None or q.promised_by < best.promised_by or (
                q.promised_by == best.promised_by and q.ship_by and best.ship_by and q.ship_by > best.ship_by):
            best = q  # earliest arrival; then the latest hand-over, which leaves the node the most time
    return best


def _backwards(node: NodeInfo, at: datetime, service: CarrierService, distance_km: float,
               calendar: CarrierCalendar, requested: date, buffer: str) -> Optional[Quote]:
    """Ship on the last day that still arrives by the requested date, buffer included."""
    last = None
    transit = service.transit_days(distance_km)
    days = transit + buffer_days(buffer, node, transit)
    for cutoff in ship_days(node, at, service, calendar):
        if delivered_on(service, node, cutoff, distance_km, calendar, days) > requested:
            break
        last = cutoff
    if last is None:
        return None
    tz = ZoneInfo(node.timezone)
    start = max(at, _day_start(tz, last.astimezone(tz).date()).astimezone(timezone.utc))
    # Released at the start of the ship day, the node must still have its processing time before cutoff.
    if ready_at(node, start) > last:
        start = at
    return Quote(end_of(requested), last, service.carrier, service.service, start if start > at else None)


def promised_by(node: NodeInfo, method: DeliveryMethod, distance_km: float, at: datetime,
                calendar: CarrierCalendar = DEFAULT_CALENDAR, buffer: str = "none") -> Optional[datetime]:
    q = quote(node, method, distance_km, at, calendar, buffer=buffer)
    return q.promised_by if q else None
