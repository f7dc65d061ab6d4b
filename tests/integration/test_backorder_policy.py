"""policy.backorder per order and per line: cancel_remaining ships what there is and cancels the rest;
ship_complete_only ships a line whole from one node, or waits until one node has it all."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, eventually, make_network, order_body
from tests.integration.flow import release

pytestmark = pytest.mark.integration


async def test_cancel_remaining_and_ship_complete_only(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 6, "SKU2": 3}, "DC-S": {"SKU1": 4}})
    body = order_body(net, [("SKU1", 10), ("SKU2", 5)], policy={"backorder": "cancel_remaining"})
    body["lines"][0]["backorder"] = "ship_complete_only"  # the line's own policy
    oid = (await api.ok("POST", "/orders", key=net.client_key, json=body, expect=201))["order_id"]
    order = await api.ok("GET", f"/orders/{oid}")
    l1, l2 = order["lines"]
    assert (l2["qty"], l2["cancelled_qty"]) == (5, 2)  # three on hand: the other two cancelled, not backordered
    assert any(t["event"] == "unavailable_cancelled" for t in order["timeline"])
    assert l1["cancelled_qty"] == 0
    [auth] = [p for p in order["payments"] if p["kind"] == "authorization"]
    assert auth["amount"] == "130.00"  # ten of L1 (waiting) and three of L2

    order = await release(api, temporal_env, oid, settings)
    shipped_lines = {l["line_id"] for f in order["fulfillments"] for l in f["lines"]}
    assert shipped_lines == {"L2"}  # 6 + 4 at two DCs would split L1: it waits whole
    assert order["status"] in ("backordered", "partially_backordered", "released")

    # Six more at DC-S: it holds all ten, and sends the line whole.
    await api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net.prefix}-GR1", "node_id": net.node("DC-S"), "sku": net.skus[0], "delta": 6,
         "reason": "goods receipt"}])

    async def whole():
        o = await api.ok("GET", f"/orders/{oid}")
        return next((f for f in o["fulfillments"] for l in f["lines"] if l["line_id"] == "L1"), None)
    f = await eventually(whole, what="L1 sourced whole")
    assert f["node_id"] == net.node("DC-S") and [(l["line_id"], l["qty"]) for l in f["lines"]] == [("L1", 10)]
