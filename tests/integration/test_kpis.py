"""KPIs over a date range and a channel, from the read model: on time against the FIRST promise (a re-promise does
not make a late order on time), cancellations by cause, split rate, time to release, pick to ship, promise slack,
cost per order, a series per day. The read model is written here as the workflows would have left it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from tests.integration.conftest import Api

D = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


async def _order(conn, channel: str, oid: str, created: datetime, status: str, first=None, latest=None,
                 delivered=None, cause=None) -> None:
    await conn.execute(text(
        "INSERT INTO orders (order_id, external_id, channel, customer_id, status, currency, total, policy, version,"
        " created_at, updated_at, first_promised_by, promised_by, delivered_at, cancel_cause)"
        " VALUES (:o, :o, :c, 'k', :s, 'USD', 10, '{}', 1, :at, :at, :f, :l, :d, :cause)"),
        {"o": oid, "c": channel, "s": status, "at": created, "f": first, "l": latest or first, "d": delivered,
         "cause": cause})
    if delivered:
        await conn.execute(text("INSERT INTO order_lines (order_id, line_id, sku, qty, unit_price, status, delivery,"
                                " cancelled_qty, shipped_qty, delivered_qty, returned_qty) VALUES"
                                " (:o, 'L1', 'S', 2, 5, 'delivered', '{}', 0, 2, 2, 0)"), {"o": oid})


async def _fulfillment(conn, oid: str, n: int, released: datetime, picked=None, shipped=None) -> None:
    await conn.execute(text(
        "INSERT INTO fulfillments (fulfillment_id, order_id, node_id, status, lines, version, released_at, picked_at,"
        " shipped_at, created_at, updated_at) VALUES (:f, :o, 'N', :s, '[]', 1, :r, :p, :sh, now(), now())"),
        {"f": f"{oid}-F{n}", "o": oid, "s": "shipped" if shipped else "released", "r": released, "p": picked,
         "sh": shipped})


async def _decision(conn, oid: str, cost: str) -> None:
    await conn.execute(text("INSERT INTO timeline_events (order_id, key, at, event, detail) VALUES (:o, 'o2', now(),"
                            " 'routing_decision', CAST(:d AS jsonb))"),
                       {"o": oid, "d": json.dumps({"reason": "initial", "attempt": 1, "feasible": True,
                                                   "total_cost": cost})})


async def test_kpis_over_a_range_against_the_first_promise(api: Api, db):
    ch = f"kpi-{uuid.uuid4().hex[:8]}"
    a, b, c, d, e, old = (f"{ch}-{x}" for x in "ABCDEF")
    async with db.engine.begin() as conn:
        # A: on time; B: late against its first promise, on time against the re-promise; C, D cancelled; E placed the
        # next day and still on its way; the last placed before the range.
        await _order(conn, ch, a, D, "delivered", first=D + 72 * H, delivered=D + 48 * H)
        await _order(conn, ch, b, D + H, "delivered", first=D + 48 * H, latest=D + 120 * H, delivered=D + 96 * H)
        await _order(conn, ch, c, D + 2 * H, "cancelled", cause="payment")
        await _order(conn, ch, d, D + 3 * H, "cancelled")
        await _order(conn, ch, e, D + 24 * H, "released", first=D + 96 * H)
        await _order(conn, ch, old, D - 120 * H, "delivered", first=D, delivered=D + 240 * H)
        await _fulfillment(conn, a, 1, D + timedelta(minutes=10), picked=D + 5 * H, shipped=D + 7 * H)
        await _fulfillment(conn, b, 1, D + H + timedelta(minutes=30))
        await _fulfillment(conn, b, 2, D + H + timedelta(minutes=30))
        await _fulfillment(conn, e, 1, D + 24 * H + timedelta(minutes=20))
        await _decision(conn, a, "12.50")
        await _decision(conn, b, "7.50")
    k = await api.ok("GET", f"/kpis?channel={ch}&from=2026-03-10&to=2026-03-11")
    assert (k["from"], k["to"], k["orders"]) == ("2026-03-10", "2026-03-11", 5)
    assert k["on_time_rate"] == 0.5 and k["on_time_rate_latest_promise"] == 1.0  # B counts as late
    assert k["order_fulfillment_rate"] == 0.25  # A, of 2 delivered + 2 cancelled
    assert k["cancellation_rate"] == 0.4 and k["cancellation_by_cause"] == {"payment": 0.2, "requested": 0.2}
    assert k["split_rate"] == round(1 / 3, 4)
    assert k["median_minutes_to_release"] == 20.0 and k["median_hours_pick_to_ship"] == 2.0
    assert k["median_promise_slack_days"] == -0.5  # A one day early, B two days late
    assert k["cost_per_order"] == "10.00"
    # Per day, for the trend charts: the 10th holds A-D (B split, released after 30 min; A after 10), the 11th E.
    assert k["series"] == [
        {"day": "2026-03-10", "orders": 4, "cancelled": 2, "delivered": 2, "on_time": 1, "complete_on_time": 1,
         "order_fulfillment_rate": 0.25, "cancellation_rate": 0.5, "split_rate": 0.5, "median_promise_slack_days": -0.5,
         "median_minutes_to_release": 20.0, "median_hours_pick_to_ship": 2.0, "cost_per_order": "10.00"},
        {"day": "2026-03-11", "orders": 1, "cancelled": 0, "delivered": 0, "on_time": 0, "complete_on_time": 0,
         "order_fulfillment_rate": None, "cancellation_rate": 0.0, "split_rate": 0.0, "median_promise_slack_days": None,
         "median_minutes_to_release": 20.0, "median_hours_pick_to_ship": None, "cost_per_order": None}]
    one_day = await api.ok("GET", f"/kpis?channel={ch}&from=2026-03-10&to=2026-03-10")
    assert one_day["orders"] == 4
    everything = await api.ok("GET", f"/kpis?channel={ch}")
    assert everything["orders"] == 6 and everything["from"] is None
    r = await api.call("GET", f"/kpis?channel={ch}&from=2026-03-11&to=2026-03-10")
    assert r.status_code == 422


async def test_an_order_with_one_parcel_delivered_and_another_on_its_way_is_not_counted_yet(api: Api, db):
    """Its delivered_at is its first parcel's: until the order is delivered it is neither on time nor late."""
    ch = f"kpi-{uuid.uuid4().hex[:8]}"
    async with db.engine.begin() as conn:
        await _order(conn, ch, f"{ch}-whole", D, "delivered", first=D + 48 * H, delivered=D + 24 * H)
        await _order(conn, ch, f"{ch}-half", D, "partially_shipped", first=D + 48 * H, delivered=D + 24 * H)
    k = await api.ok("GET", f"/kpis?channel={ch}")
    assert (k["orders"], k["on_time_rate"], k["order_fulfillment_rate"]) == (2, 1.0, 1.0)
    assert k["series"][0]["delivered"] == 1 and k["series"][0]["order_fulfillment_rate"] == 1.0
