"""Incoming supply dates backorders (never sells as stock); an ETA change re-promises; a receipt sources them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.conftest import Api, eventually, make_network, order_body
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


async def test_preorder_reserved_now_released_on_its_release_day(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {}})
    sku = net.skus[0]
    day = (datetime.now(timezone.utc) + timedelta(days=5)).date()
    await api.ok("PUT", f"/skus/{sku}", json={"name": "Console", "weight_kg": 2.0, "preorder_release_date": day.isoformat()})
    assert (await api.ok("GET", f"/availability?skus={sku}"))["skus"][0]["preorder_release_date"] == day.isoformat()

    placed = await place(api, net, [("SKU1", 2)])
    oid = placed["order_id"]
    assert placed["promise"]["promised_by"][:10] > day.isoformat()  # ships on its release day at the earliest
    handle = temporal_env.client.get_workflow_handle(oid)
    await temporal_env.fast_forward(handle, settings.remorse_window)
    # Past the remorse window the units stay reserved, waiting for the release day, at no node yet.
    released = await eventually(lambda: _event(api, oid, "released"), what="the remorse window to end")
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["status"] == "awaiting_release" and order["fulfillments"] == []
    node = next(n for n in (await api.ok("GET", f"/inventory/{net.node('DC-N')}"))["items"] if n["sku"] == sku)
    assert node["reserved"] == 2
    assert list(released["detail"]["held_until"].values())[0][:10] == day.isoformat()

    # To the release day (not past it: the fast-forward cannot skip the running fulfillment's time).
    until = datetime.fromisoformat(list(released["detail"]["held_until"].values())[0])
    await temporal_env.fast_forward(handle, until - datetime.fromisoformat(released["at"]))
    f = await fulfillment(api, oid, net.node("DC-N"))
    assert f["ship_by"][:10] >= day.isoformat()
    assert "preorder_released" in [t["event"] for t in (await api.ok("GET", f"/orders/{oid}"))["timeline"]]


async def test_preorders_claim_incoming_supply_first_come_first_served(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {}, "DC-S": {}})
    node, sku = net.node("DC-N"), net.skus[0]
    day = (datetime.now(timezone.utc) + timedelta(days=20)).date()
    await api.ok("PUT", f"/skus/{sku}", json={"name": "Console", "weight_kg": 2.0, "preorder_release_date": day.isoformat()})
    eta = datetime.now(timezone.utc) + timedelta(days=10)
    await api.ok("POST", "/inventory/supply", json=[
        {"supply_id": f"{net.prefix}-PO1", "node_id": node, "sku": sku, "qty": 3, "eta": eta.isoformat()}])

    # Nothing on hand: the preorder is taken against the incoming units and dated from the release day.
    first = await place(api, net, [("SKU1", 2)])
    assert first["status"] == "awaiting_release" and first["promise"]["promised_by"][:10] > day.isoformat()

    async def unclaimed():
        return (await api.ok("GET", f"/availability?skus={sku}"))["skus"][0]["incoming"][0]["unclaimed"]
    assert await unclaimed() == 1
    # The same incoming unit is never promised twice.
    second = await api.call("POST", "/orders", key=net.client_key, json=order_body(net, [("SKU1", 2)]))
    assert second.status_code == 201 and second.json()["status"] == "rejected"
    rejected = await order_status(api, second.json()["order_id"], "rejected")
    assert any("no eligible node has stock" in str(t["detail"]) for t in rejected["timeline"] if t["event"] == "rejected"), rejected["timeline"]

    handle = temporal_env.client.get_workflow_handle(first["order_id"])
    await temporal_env.fast_forward(handle, settings.remorse_window)
    await eventually(lambda: _event(api, first["order_id"], "released"), what="the remorse window to end")
    assert (await api.ok("GET", f"/orders/{first['order_id']}"))["status"] == "backordered"
    # A partial cancellation gives back the claim on the cancelled unit.
    await api.ok("POST", f"/orders/{first['order_id']}/cancel", key=net.client_key,
                 json={"reason": "changed mind", "lines": [{"line_id": "L1", "qty": 1}]})
    await eventually(lambda: _equals(unclaimed(), 2), what="one claimed unit given back")
    third = await place(api, net, [("SKU1", 2)])
    assert third["status"] == "awaiting_release"
    assert await unclaimed() == 0

    # The goods arrive: the waiting preorders are sourced from stock, their claims end.
    await api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net.prefix}-GR1", "node_id": node, "sku": sku, "delta": 3, "reason": "goods receipt"}])
    await api.ok("POST", "/inventory/supply", json=[
        {"supply_id": f"{net.prefix}-PO1", "node_id": node, "sku": sku, "qty": 0, "eta": eta.isoformat()}])

    async def reserved(qty):
        items = (await api.ok("GET", f"/inventory/{node}"))["items"]
        return next((i for i in items if i["sku"] == sku and i["reserved"] == qty), None)
    await eventually(lambda: reserved(1), what="the released preorder reserved from the received stock")
    # The other is still in its remorse window; when that ends it looks for stock at once.
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(third["order_id"]), settings.remorse_window)
    await eventually(lambda: reserved(3), what="the second preorder reserved from the received stock")
    for oid in (first["order_id"], third["order_id"]):
        order = await api.ok("GET", f"/orders/{oid}")
        assert order["status"] == "awaiting_release" and order["fulfillments"] == []  # until the release day
    assert (await api.ok("GET", f"/availability?skus={sku}"))["skus"][0]["incoming"] == []


async def _event(api: Api, order_id: str, event: str):
    return next((t for t in (await api.ok("GET", f"/orders/{order_id}"))["timeline"] if t["event"] == event), None)


async def _equals(value, expected):
    return (await value) == expected or None
