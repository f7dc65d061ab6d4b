"""One common pool, seen by each channel through its view: nodes it sells from, a buffer it leaves."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, make_network, order_body
from tests.integration.flow import place

pytestmark = pytest.mark.integration


async def test_channel_buffer_and_node_filter(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 10}, "DC-S": {"SKU1": 4}})
    market = f"{net.prefix}-marketplace"
    sku = net.skus[0]
    # The marketplace leaves 3 units plus 10% of on hand at each node, and never sells from DC-S.
    await api.ok("PUT", f"/channels/{market}", json={"buffer_units": 3, "buffer_pct": 10,
                                                      "exclude_nodes": [net.node("DC-S")]})
    own = await api.ok("GET", f"/availability?skus={sku}&channel={net.channel}")
    seen = await api.ok("GET", f"/availability?skus={sku}&channel={market}")
    assert own["skus"][0]["available"] == 14
    assert seen["skus"][0]["available"] == 6  # 10 − 3 − ceil(1.0)
    assert [n["node_id"] for n in seen["skus"][0]["nodes"]] == [net.node("DC-N")]

    market_key = await api.key("client", channel=market)
    body = order_body(net, [("SKU1", 8)], channel=market)
    body["channel"] = market
    placed = await api.ok("POST", "/orders", key=market_key, json=body, expect=201)
    order = await api.ok("GET", f"/orders/{placed['order_id']}")
    decision = next(t for t in order["timeline"] if t["event"] == "routing_decision")["detail"]
    assert [(a["node_id"], a["lines"][0]["qty"]) for a in decision["allocations"]] == [(net.node("DC-N"), 6)]
    south = next(c for c in decision["candidates"] if c["node_id"] == net.node("DC-S"))
    assert "not sold on channel" in south["reason"]
    # The brand's own site still gets the 4 units the marketplace had to leave at DC-N, and DC-S.
    mine = await place(api, net, [("SKU1", 8)], policy={"fill_or_kill": True})
    assert mine["status"] == "awaiting_release"
    left = await api.ok("GET", f"/availability?skus={sku}&channel={net.channel}")
    assert left["skus"][0]["available"] == 0


async def test_stock_protected_for_a_customer_tier(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {}})
    sku, node = net.skus[0], net.node("DC-N")
    await api.ok("PUT", "/protected-stock", json=[{"node_id": node, "sku": sku, "tier": "key-account", "qty": 3}])
    seen = lambda tier=None: api.ok("GET", f"/availability?skus={sku}" + (f"&tier={tier}" if tier else ""))
    assert (await seen())["skus"][0]["available"] == 2
    assert (await seen("key-account"))["skus"][0]["available"] == 5
    assert (await seen("vip"))["skus"][0]["available"] == 2
    # An ordinary customer cannot take the protected units...
    plain = await place(api, net, [("SKU1", 3)], policy={"fill_or_kill": True})
    assert plain["status"] == "rejected"
    # ...the key account (a client key an admin bound to the tier) can take all of them.
    key_account = await api.key("client", channel=net.channel, tier="key-account")
    body = order_body(net, [("SKU1", 5)], policy={"fill_or_kill": True})
    vip = await api.ok("POST", "/orders", key=key_account, json=body, expect=201)
    assert vip["status"] == "awaiting_release"
    assert (await seen("key-account"))["skus"][0]["available"] == 0
    await api.ok("PUT", "/protected-stock", json=[{"node_id": node, "sku": sku, "tier": "key-account", "qty": 0}])
    assert (await api.ok("GET", f"/protected-stock?node_id={node}"))["protected"] == []
