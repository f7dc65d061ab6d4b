"""Waves: a DC that releases work at 08:00 and 13:00 batches the orders asking for waves into its next wave;
an order's work to one place from that DC is one shipment per wave; GET /fulfillments?wave= is the wave's
pick list."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.integration.conftest import Api, eventually, make_network, order_body
from tests.integration.flow import b2b_key

pytestmark = pytest.mark.integration


async def _event(api: Api, oid: str, event: str):
    o = await api.ok("GET", f"/orders/{oid}")
    return next((t for t in o["timeline"] if t["event"] == event), None)


async def test_orders_released_between_waves_go_out_in_the_next_one_consolidated(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 50}})
    dc = net.node("DC-N")
    # Two waves: one half an hour past the remorse window (local time), one twelve hours later (listed first).
    chicago = ZoneInfo("America/Chicago")
    soon = datetime.now(chicago) + settings.remorse_window + timedelta(minutes=30)
    first, later = soon.strftime("%H:%M"), (soon + timedelta(hours=12)).strftime("%H:%M")
    await api.ok("PATCH", f"/nodes/{dc}", json={"calendar": {"waves": [later, first]}})
    assert (await api.ok("GET", f"/nodes/{dc}"))["calendar"]["waves"] == sorted([first, later])
    await api.ok("PATCH", f"/nodes/{dc}", json={"calendar": {"waves": ["8am"]}}, expect=422)
    key = await b2b_key(api, net)
    wave_policy = {"release": "wave"}

    # A: SKU1 on hand, SKU2 nowhere yet (backordered). B: one line. C: the same, released at once.
    a = order_body(net, [("SKU1", 4), ("SKU2", 3)], policy=wave_policy, customer={"id": "acme", "tier": "b2b"})
    b = order_body(net, [("SKU1", 2)], policy=wave_policy, customer={"id": "acme", "tier": "b2b"})
    c = order_body(net, [("SKU1", 1)], customer={"id": "acme", "tier": "b2b"})
    oids = [(await api.ok("POST", "/orders", key=key, json=x, expect=201))["order_id"] for x in (a, b, c)]
    # SKU2 comes in at the DC during the remorse window: A's backorder is sourced when it is released.
    await api.ok("PUT", f"/inventory/{dc}", json={
        "as_of": "2026-06-01T00:00:00Z", "items": [{"sku": net.skus[0], "on_hand": 50}, {"sku": net.skus[1], "on_hand": 10}]})

    released = {}
    for oid in oids:
        await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window)
        released[oid] = await eventually(lambda: _event(api, oid, "released"), what=f"{oid} released")
    # C went to the DC at once; A and B wait for the DC's next wave.
    assert released[oids[2]]["detail"]["fulfillments"] and not released[oids[2]]["detail"]["held_until"]
    waves = {w for oid in oids[:2] for w in released[oid]["detail"]["held_until"].values()}
    assert len(waves) == 1
    wave = datetime.fromisoformat(waves.pop())
    assert wave.astimezone(chicago).strftime("%H:%M") == first
    assert timedelta(minutes=25) < wave - datetime.fromisoformat(released[oids[0]]["at"]) < timedelta(minutes=35)
    order = await api.ok("GET", f"/orders/{oids[0]}")
    assert order["fulfillments"] == []  # reserved, not yet at the DC

    for oid in oids[:2]:
        at = datetime.fromisoformat(released[oid]["at"])
        await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), wave - at)

    async def in_wave():
        got = await api.ok("GET", "/fulfillments", params={"node_id": dc, "wave": wave.isoformat()})
        return got if len(got["fulfillments"]) == 2 else None
    got = await eventually(in_wave, what="the wave's fulfillments")
    by_order = {f["order_id"]: f for f in got["fulfillments"]}
    assert set(by_order) == set(oids[:2])
    # A's two plans (on hand, then the backorder sourced at release) are one shipment in the wave.
    assert sorted((l["line_id"], l["qty"]) for l in by_order[oids[0]]["lines"]) == [("L1", 4), ("L2", 3)]
    assert all(datetime.fromisoformat(f["wave"]) == wave for f in got["fulfillments"])
    assert {p["sku"]: p["qty"] for p in got["pick_list"]} == {net.skus[0]: 6, net.skus[1]: 3}
    order = await api.ok("GET", f"/orders/{oids[0]}")
    assert len(order["fulfillments"]) == 1
    assert any(t["event"] == "consolidated" for t in order["timeline"])
    await api.ok("GET", "/fulfillments", params={"wave": wave.isoformat()}, expect=422)  # a wave is a node's
