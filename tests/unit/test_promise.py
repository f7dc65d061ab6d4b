"""The promise engine: cutoffs, node and carrier calendars, carrier choice, store hours, same day,
backwards scheduling to a requested date; and routing paying for lateness against a promise."""

from __future__ import annotations

from datetime import date, datetime, timezone

from models.status import DeliveryMethod as M
from promise import CarrierCalendar, promised_by, quote, ready_at, ship_by
from routing import CostModel, NetworkView, RouteLine, RouteRequest, plan
from routing.model import NodeInfo

NY = NodeInfo("N", "dc", 40.7, -74.0, frozenset({"ship"}), processing_minutes=120, cutoff_time="15:00",
              timezone="America/New_York", closed_weekdays=frozenset({6}), holidays=frozenset({"2026-12-25"}))
STORE = NodeInfo("S", "store", 40.7, -74.0, frozenset({"ship", "pickup", "same_day"}), processing_minutes=120,
                 timezone="America/New_York", hours=("10:00", "20:00"), closed_weekdays=frozenset({6}),
                 same_day_cutoff="14:00")


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_ship_by_same_day_before_cutoff():
    # Tuesday 10:00 New York: ready at 12:00, ships at the 15:00 cutoff.
    assert ship_by(NY, utc(2026, 11, 24, 15, 0)) == utc(2026, 11, 24, 20, 0)


def test_ship_by_after_cutoff_is_next_open_day():
    # Saturday 16:00 New York: past cutoff; Sunday is closed; ships Monday 15:00.
    assert ship_by(NY, utc(2026, 11, 21, 21, 0)) == utc(2026, 11, 23, 20, 0)


def test_ship_by_skips_node_holidays():
    # Thursday 24 Dec after cutoff → 25 Dec is a holiday → Saturday 26th.
    assert ship_by(NY, utc(2026, 12, 24, 22, 0)) == utc(2026, 12, 26, 20, 0)


def test_the_faster_carrier_wins_and_carrier_holidays_count():
    tue = utc(2026, 11, 24, 15, 0)
    # 200 km: FedEx ground's first zone reaches 250 km (1 day), UPS's 150 km (2 days) → FedEx, Wednesday.
    q = quote(NY, M.ship_standard, 200, tue)
    assert (q.carrier, q.service, q.promised_by) == ("fedex", "ground", utc(2026, 11, 25, 23, 59))
    assert q.ship_by == utc(2026, 11, 24, 20, 0)
    # 500 km, 2 days: Thursday 26 Nov is Thanksgiving, no carrier delivers → Friday.
    assert promised_by(NY, M.ship_standard, 500, tue) == utc(2026, 11, 27, 23, 59)
    # A carrier's own closure (a storm) moves its dates: UPS is then the faster one at 100 km.
    storm = CarrierCalendar(closures={"fedex": frozenset({"2026-11-25"})})
    q = quote(NY, M.ship_standard, 100, tue, storm)
    assert q.carrier == "ups" and q.promised_by == utc(2026, 11, 25, 23, 59)
    assert quote(NY, M.ship_standard, 100, tue).promised_by == q.promised_by  # same day either way, 100 km


def test_pickup_and_delivery_days_differ_by_carrier():
    # Friday ship, 500 km: UPS delivers Saturday and Monday → Monday; FedEx ground not before Tuesday.
    fri = utc(2026, 11, 27, 15, 0)
    q = quote(NY, M.ship_standard, 500, fri)
    assert q.carrier == "ups" and q.promised_by == utc(2026, 11, 30, 23, 59)
    # Saturday morning: only FedEx collects on Saturday, but both land Wednesday; the later hand-over
    # (UPS, Monday) is kept, which leaves the node the most time.
    q = quote(NY, M.ship_standard, 500, utc(2026, 11, 28, 15, 0))
    assert q.promised_by == utc(2026, 12, 2, 23, 59) and q.carrier == "ups"
    assert q.ship_by == utc(2026, 11, 30, 20, 0)
    # Express: one day within 1,600 km.
    assert quote(NY, M.ship_express, 1000, utc(2026, 11, 24, 15, 0)).promised_by == utc(2026, 11, 25, 23, 59)


def test_pickup_is_ready_within_store_hours():
    # Tuesday 19:00 local: one hour today, the second when the store opens Wednesday → 11:00 local.
    assert ready_at(STORE, utc(2026, 11, 25, 0, 0)) == utc(2026, 11, 25, 16, 0)
    q = quote(STORE, M.pickup, 0, utc(2026, 11, 25, 0, 0))
    assert q.promised_by == utc(2026, 11, 25, 16, 0) and q.ship_by is None
    # Saturday 19:30, closed Sunday → Monday 11:30 local.
    assert ready_at(STORE, utc(2026, 11, 29, 0, 30)) == utc(2026, 11, 30, 16, 30)
    # Before opening: processing starts at 10:00.
    assert ready_at(STORE, utc(2026, 11, 24, 12, 0)) == utc(2026, 11, 24, 17, 0)


def test_same_day_only_before_the_cutoff():
    q = quote(STORE, M.same_day, 5, utc(2026, 11, 24, 15, 0))  # 10:00 local, ready 12:00
    assert q is not None and q.promised_by == utc(2026, 11, 25, 2, 0)  # 21:00 local
    assert quote(STORE, M.same_day, 5, utc(2026, 11, 24, 18, 0)) is None  # ready 15:00, past 14:00


def test_a_requested_date_is_scheduled_backwards():
    tue = utc(2026, 11, 24, 15, 0)
    q = quote(NY, M.ship_standard, 500, tue, requested=date(2026, 12, 4))
    # Two days of transit: it must leave by Wednesday 2 Dec, and reaches the node that morning.
    assert q.promised_by == utc(2026, 12, 4, 23, 59)
    assert q.ship_by == utc(2026, 12, 2, 20, 0) and q.hold_until == utc(2026, 12, 2, 5, 0)
    # A date the network cannot make: the earliest it can.
    early = quote(NY, M.ship_standard, 500, tue, requested=date(2026, 11, 25))
    assert early.promised_by == utc(2026, 11, 27, 23, 59) and early.hold_until is None


def test_routing_prefers_a_node_that_keeps_the_promise():
    near = NodeInfo("NEAR", "dc", 41.6, -88.1, frozenset({"ship"}), cutoff_time="08:00", timezone="America/Chicago")
    far = NodeInfo("FAR", "dc", 43.04, -87.91, frozenset({"ship"}), timezone="America/Chicago")  # Milwaukee
    net = NetworkView(nodes={"NEAR": near, "FAR": far}, available={("NEAR", "A"): 5, ("FAR", "A"): 5})
    at = utc(2026, 11, 17, 15, 0)  # 09:00 Chicago: NEAR has missed its 08:00 cutoff, FAR ships today
    dest = dict(postal_code="60601", lat=41.88, lon=-87.63)
    free = plan(RouteRequest(lines=(RouteLine("L1", "A", 1, "ship_standard", **dest),), at=at), net)
    assert [a.node_id for a in free.assignments] == ["NEAR"]  # cheaper, and nothing is due
    due = date(2026, 11, 18)  # FAR: out Tuesday, in Wednesday; NEAR: out Wednesday, in Thursday
    late = plan(RouteRequest(lines=(RouteLine("L1", "A", 1, "ship_standard", due=due, **dest),), at=at), net)
    assert [a.node_id for a in late.assignments] == ["FAR"]
    lost = next(v for v in late.verdicts if v.node_id == "NEAR")
    assert lost.outcome == "lost" and "delivers 1 day after the promise" in lost.reason
    # The penalty is per unit and day: small enough that a far cheaper late node can still win.
    cheap = plan(RouteRequest(lines=(RouteLine("L1", "A", 1, "ship_standard", due=due, **dest),), at=at), net,
                 CostModel(late_per_unit_day=0.01))
    assert [a.node_id for a in cheap.assignments] == ["NEAR"]


def test_buffer_policies_add_delivery_days_where_they_say():
    tue = utc(2026, 11, 17, 15, 0)
    plain = quote(NY, M.ship_standard, 500, tue)
    assert plain.promised_by == utc(2026, 11, 19, 23, 59)
    # One more delivery day for every promise: Friday.
    assert quote(NY, M.ship_standard, 500, tue, buffer="flat").promised_by == utc(2026, 11, 20, 23, 59)
    # Only where the risk is: not a DC two days out; a store picking, or three days of transit, yes.
    assert quote(NY, M.ship_standard, 500, tue, buffer="risk").promised_by == plain.promised_by
    assert quote(STORE, M.ship_standard, 500, tue, buffer="risk").promised_by > plain.promised_by
    assert quote(NY, M.ship_standard, 1000, tue, buffer="risk").promised_by == utc(2026, 11, 21, 23, 59)  # UPS, Sat
    # Backwards scheduling keeps the buffer: it leaves a day earlier to arrive by the date asked for.
    back = quote(NY, M.ship_standard, 500, tue, requested=date(2026, 12, 4), buffer="flat")
    assert back.promised_by == utc(2026, 12, 4, 23, 59) and back.ship_by == utc(2026, 12, 1, 20, 0)
