"""Checkout holds: stock kept for a cart, converted by the order that follows, released by a schedule when they expire."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from launcher.worker import ensure_schedules
from tests.integration.conftest import Api, eventually, make_network, order_body
from tests.integration.flow import place
from workflows.holds import HOLD_SWEEP_SCHEDULE

pytestmark = pytest.mark.integration


async def available(api: Api, sku: str) -> int:
    return (await api.ok("GET", f"/availability?skus={sku}"))["skus"][0]["available"]


async def test_hold_is_converted_by_its_order(api: Api, db):
    net = await make_network(api, stock={"DC-N": {"SKU1": 4}})
    sku = net.skus[0]
    hold = await api.ok("POST", "/holds", key=net.client_key, expect=201, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code},
        "lines": [{"sku": sku, "qty": 3}]})
    assert hold["status"] == "active" and hold["lines"][0]["node_id"] == net.node("DC-N")
    assert await available(api, sku) == 1
    # Nobody else can take the held units.
    other = await place(api, net, [("SKU1", 2)], policy={"fill_or_kill": True})
    assert other["status"] == "rejected"
    # Holding more than there is is refused and holds nothing.
    r = await api.call("POST", "/holds", key=net.client_key, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code}, "lines": [{"sku": sku, "qty": 2}]})
    assert r.status_code == 409 and await available(api, sku) == 1

    body = order_body(net, [("SKU1", 3)], hold_id=hold["hold_id"], policy={"fill_or_kill": True})
    placed = await api.ok("POST", "/orders", key=net.client_key, json=body, expect=201)
    assert placed["status"] == "awaiting_release"
    assert await available(api, sku) == 1
    view = await api.ok("GET", f"/holds/{hold['hold_id']}", key=net.client_key)
    assert view["status"] == "converted" and view["order_id"] == placed["order_id"] and view["lines"] == []
    ledger = await api.ok("GET", f"/inventory/{net.node('DC-N')}/{sku}/ledger")
    assert "hold_converted" in [e["reason"] for e in ledger["entries"]]
    # A converted hold cannot be used twice, nor by another channel.
    again = await api.call("POST", "/orders", key=net.client_key,
                           json=order_body(net, [("SKU1", 1)], hold_id=hold["hold_id"]))
    assert again.status_code == 409
    stranger = await make_network(api)
    r = await api.call("GET", f"/holds/{hold['hold_id']}", key=stranger.client_key)
    assert r.status_code == 403


async def test_expired_holds_are_released_by_the_schedule(api: Api, db, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 4}})
    sku = net.skus[0]
    hold = await api.ok("POST", "/holds", key=net.client_key, expect=201, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code}, "lines": [{"sku": sku, "qty": 4}]})
    assert await available(api, sku) == 0
    async with db.engine.begin() as conn:  # the shopper walked away a while ago
        for table, key in (("checkout_holds", "hold_id"), ("reservations", "fulfillment_id")):
            await conn.execute(text(f"UPDATE {table} SET expires_at = now() - interval '1 minute' WHERE {key} = :h"),
                               {"h": hold["hold_id"]})
    await ensure_schedules(temporal_env.client, settings)
    await ensure_schedules(temporal_env.client, settings)  # a second worker starting changes nothing
    await temporal_env.client.get_schedule_handle(HOLD_SWEEP_SCHEDULE).trigger()

    async def released():
        view = await api.ok("GET", f"/holds/{hold['hold_id']}", key=net.client_key)
        return view if view["status"] == "expired" else None

    await eventually(released, what="the sweep to release the expired hold")
    assert await available(api, sku) == 4
    r = await api.call("DELETE", f"/holds/{hold['hold_id']}", key=net.client_key)
    assert r.status_code == 200 and r.json()["status"] == "expired"
