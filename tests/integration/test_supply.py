"""Incoming supply dates backorders (never sells as stock); an ETA change re-promises; a receipt sources them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.conftest import Api, eventually, make_network
from tests.integration.flow import fulfillment, order_status, place, release

pytestmark = pytest.mark.integration


async def test_backorder_promised_from_supply_and_sourced_on_receipt(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 2}, "DC-S": {}})
    node, sku = net.node("DC-N"), net.skus[0]
    oid = (await place(api, net, [("SKU1", 5)]))["order_id"]
    await release(api, temporal_env, oid, settings)
    await order_status(api, oid, "backordered")
    first = (await api.ok("GET", f"/orders/{oid}"))["lines"][0]["promised_by"]

    eta = datetime.now(timezone.utc) + timedelta(days=10)
    supply = {"supply_id": f"{net.prefix}-PO1", "node_id": node, "sku": sku, "qty": 10, "eta": eta.isoformat()}
    r = await api.ok("POST", "/inventory/supply", json=[supply])
    assert r["changed_skus"] == [sku] and r["orders_repromised"] == 1
    avail = (await api.ok("GET", f"/availability?skus={sku}"))["skus"][0]
    assert avail["available"] == 0 and avail["incoming"][0]["qty"] == 10  # supply is not stock

    async def promised_after(limit):
        line = (await api.ok("GET", f"/orders/{oid}"))["lines"][0]
        return line["promised_by"] if line["promised_by"] and line["promised_by"] > limit else None

    late = await eventually(lambda: promised_after(eta.isoformat()), what="the supply date on the backorder")
    assert late > first
    # The purchase order is expected earlier: the promise moves with it.
    sooner = eta - timedelta(days=6)
    r = await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": sooner.isoformat()}])
    assert r["orders_repromised"] == 1

    async def moved_earlier():
        line = (await api.ok("GET", f"/orders/{oid}"))["lines"][0]
        return line if line["promised_by"] < late else None

    await eventually(moved_earlier, what="re-promise to the earlier date")
    order = await api.ok("GET", f"/orders/{oid}")
    assert [t["event"] for t in order["timeline"]].count("repromised") >= 2
    # Repeating the same supply changes nothing and wakes nobody.
    assert (await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": sooner.isoformat()}]))["changed_skus"] == []

    # The goods arrive: the receipt wakes the order, which sources the three units.
    await api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net.prefix}-GR1", "node_id": node, "sku": sku, "delta": 10, "reason": "goods receipt"}])

    async def sourced():
        o = await api.ok("GET", f"/orders/{oid}")
        return o if o["status"] == "released" and len(o["fulfillments"]) == 2 else None

    order = await eventually(sourced, what="the backorder to be sourced")
    assert sorted(sum(l["qty"] for l in f["lines"]) for f in order["fulfillments"]) == [2, 3]
