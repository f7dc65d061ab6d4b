"""A B2B order with a delivery date: scheduled backwards from it, and changed after release (quantity, date)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, Net, eventually, make_network
from tests.integration.flow import b2b_key, place

pytestmark = pytest.mark.integration


def line(net: Net, qty: int) -> dict:
    return {"line_id": "L1", "sku": net.skus[0], "qty": qty, "unit_price": "10.00",
            "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}


async def held(db, order_id: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT COALESCE(SUM(qty), 0) FROM reservations WHERE order_id = :o AND status IN ('held', 'committed')"),
            {"o": order_id})).scalar_one())


async def test_a_b2b_order_changes_quantity_and_date_after_release(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    wanted = datetime.now(timezone.utc).date() + timedelta(days=20)
    placed = await place(api, net, [("SKU1", 4)], requested_delivery_date=wanted.isoformat(),
                         customer={"id": "acme"}, key=await b2b_key(api, net))
    oid = placed["order_id"]
    assert placed["promise"]["promised_by"].startswith(wanted.isoformat())

    # After the remorse window the units stay reserved, held back until the ship day that arrives on time.
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window)

    async def released():
        o = await api.ok("GET", f"/orders/{oid}")
        return o if any(t["event"] == "released" for t in o["timeline"]) else None
    order = await eventually(released, what="released")
    assert order["fulfillments"] == [] and order["status"] == "awaiting_release"
    hold = next(t for t in order["timeline"] if t["event"] == "released")["detail"]["held_until"]
    assert list(hold.values())[0][:10] > date.today().isoformat()
    assert await held(db, oid) == 4

    # More units and a later date: the order is processed again and promised again.
    later = wanted + timedelta(days=5)
    body = {"lines": [line(net, 6)], "requested_delivery_date": later.isoformat()}
    changed = await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json=body)
    assert changed["promise"]["promised_by"].startswith(later.isoformat())
    assert await held(db, oid) == 6
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["lines"][0]["qty"] == 6 and order["requested_delivery_date"] == later.isoformat()
    events = {t["event"]: t["detail"] for t in order["timeline"]}
    assert events["modified_after_release"]["requested_delivery_date"] == later.isoformat()
    assert events["repromised"]["old"][:10] == wanted.isoformat()
    assert events["repromised"]["new"][:10] == later.isoformat()
    assert any(p["kind"] == "authorization" and p["amount"] == "60.00" for p in order["payments"])

    # Fewer units: the rest is given back.
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [line(net, 2)]})
    assert await held(db, oid) == 2
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["lines"][0]["qty"] - order["lines"][0]["cancelled_qty"] == 2

    # Anything else after release is refused and changes nothing.
    other_sku = {**line(net, 2), "sku": net.skus[1]}
    for bad in ({"lines": [other_sku]}, {"address": {"postal_code": net.postal_code}},
                {"policy": {"ship_complete": True}}):
        r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json=bad)
        assert r.status_code == 409, (bad, r.text)
    assert await held(db, oid) == 2


async def test_a_bulk_change_of_500_lines_is_one_replan(api: Api, temporal_env, settings, db):
    """A distributor changes 500 lines of a 600-line order after release in one call: one Update, one routing
    decision for everything it adds, what it takes away cancelled at the node."""
    net = await make_network(api, stock={"DC-N": {"SKU1": 5000}, "DC-S": {"SKU1": 5000}})
    body_lines = [{**line(net, 2), "line_id": f"L{i}"} for i in range(1, 601)]
    placed = await api.ok("POST", "/orders", key=await b2b_key(api, net), expect=201, json={
        "external_id": f"bulk-{net.prefix}", "channel": net.channel, "customer": {"id": "acme", "tier": "b2b"},
        "lines": body_lines, "policy": {"max_splits": 0}})
    oid = placed["order_id"]
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window)

    async def released():
        o = await api.ok("GET", f"/orders/{oid}")
        return o if o["fulfillments"] and o["status"] != "awaiting_release" else None
    await eventually(released, what="released")
    assert await held(db, oid) == 1200

    changed = [{**l, "qty": 3 if i % 2 else 1} for i, l in enumerate(body_lines[:500])]
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": changed})

    async def settled():
        o = await api.ok("GET", f"/orders/{oid}")
        live = sum(l["qty"] - l["cancelled_qty"] for l in o["lines"])
        return o if live == 1200 and await held(db, oid) == 1200 else None
    order = await eventually(settled, what="the change applied")
    decisions = [t["detail"] for t in order["timeline"] if t["event"] == "routing_decision"
                 and t["detail"]["reason"] == "b2b_change"]
    assert len(decisions) == 1 and decisions[0]["feasible"]
    by_line = {l["line_id"]: l["qty"] - l["cancelled_qty"] for l in order["lines"]}
    assert by_line["L1"] == 1 and by_line["L2"] == 3 and by_line["L501"] == 2
    assert len([t for t in order["timeline"] if t["event"] == "modified_after_release"]) == 1
