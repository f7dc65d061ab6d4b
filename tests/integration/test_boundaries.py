"""Where a key may not go (issue 16): each test here failed on the code before its fix."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, make_network
from tests.integration.flow import order_status, released_to, walk

pytestmark = pytest.mark.integration


async def _supply(db, supply_id: str):
    async with db.engine.connect() as conn:
        return (await conn.execute(text("SELECT node_id, qty FROM incoming_supply WHERE supply_id = :i"),
                                   {"i": supply_id})).first()


async def test_a_partner_cannot_cancel_or_take_over_another_nodes_purchase_order(api: Api, db):
    net = await make_network(api)
    north, south, sku = net.node("DC-N"), net.node("DC-S"), net.skus[0]
    eta = (datetime.now(timezone.utc) + timedelta(days=10)).isoformat()
    po = {"supply_id": f"{net.prefix}-PO-S", "node_id": south, "sku": sku, "qty": 40, "eta": eta}
    await api.ok("POST", "/inventory/supply", json=[po])
    partner_north = await api.key("partner", node_id=north)

    # Cancelling it in the name of its own node, or re-announcing it as its own: refused, nothing changes.
    for attempt in ({**po, "node_id": north, "qty": 0}, {**po, "node_id": north, "qty": 5}):
        r = await api.call("POST", "/inventory/supply", key=partner_north, json=[attempt])
        assert r.status_code == 403, r.text
        assert "belongs to node" in r.json()["detail"]
        assert tuple(await _supply(db, po["supply_id"])) == (south, 40)
    # A feed with one foreign purchase order among its own applies none of it.
    mine = {"supply_id": f"{net.prefix}-PO-N", "node_id": north, "sku": sku, "qty": 7, "eta": eta}
    r = await api.call("POST", "/inventory/supply", key=partner_north, json=[mine, {**po, "node_id": north, "qty": 0}])
    assert r.status_code == 403 and await _supply(db, mine["supply_id"]) is None
    # Its own node's partner may change it; an admin may move it.
    partner_south = await api.key("partner", node_id=south)
    await api.ok("POST", "/inventory/supply", key=partner_south, json=[{**po, "qty": 30}])
    assert tuple(await _supply(db, po["supply_id"])) == (south, 30)
    await api.ok("POST", "/inventory/supply", json=[{**po, "node_id": north, "qty": 30}])
    assert tuple(await _supply(db, po["supply_id"])) == (north, 30)


async def test_a_feed_event_id_never_stands_in_for_the_systems_own(api: Api, temporal_env, settings):
    """A partner that knows how the system names its ledger events (restock:{return}:{line}) posts a zero
    adjustment under that name first; the return's restock must land all the same."""
    net = await make_network(api)
    dc, sku = net.node("DC-N"), net.skus[0]
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 2)])
    partner = await api.key("partner", node_id=dc)
    await walk(api, f, partner)
    await order_status(api, oid, "delivered")
    ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
    r = await api.ok("POST", "/inventory/adjustments", key=partner, json=[
        {"event_id": f"restock:{ret['return_id']}:L1", "node_id": dc, "sku": sku, "delta": 0, "reason": "count"}])
    assert r["applied"] == 1
    on_hand = {i["sku"]: i["on_hand"] for i in (await api.ok("GET", f"/inventory/{dc}"))["items"]}[sku]
    await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner,
                 json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
    after = {i["sku"]: i["on_hand"] for i in (await api.ok("GET", f"/inventory/{dc}"))["items"]}[sku]
    assert after == on_hand + 1, "the restock was swallowed by the partner's event id"
    ledger = (await api.ok("GET", f"/inventory/{dc}/{sku}/ledger"))["entries"]
    assert [e["reason"] for e in ledger if e["event_id"] == f"restock:{ret['return_id']}:L1"] == ["return_restock"]


async def test_feed_event_ids_are_each_nodes_own(api: Api):
    """Two nodes' feeds may use the same event id (each its own count-1): both apply; a repeat at one node is
    a duplicate there only."""
    net = await make_network(api)
    north, south, sku = net.node("DC-N"), net.node("DC-S"), net.skus[1]
    event = f"{net.prefix}-count-1"
    for node in (north, south):
        key = await api.key("partner", node_id=node)
        r = await api.ok("POST", "/inventory/adjustments", key=key, json=[
            {"event_id": event, "node_id": node, "sku": sku, "delta": 3, "reason": "cycle count"}])
        assert r == {"applied": 1, "duplicates": []}, (node, r)
        again = await api.ok("POST", "/inventory/adjustments", key=key, json=[
            {"event_id": event, "node_id": node, "sku": sku, "delta": 3, "reason": "cycle count"}])
        assert again == {"applied": 0, "duplicates": [event]}
    for node in (north, south):
        items = {i["sku"]: i["on_hand"] for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}
        assert items[sku] == 13, node


async def test_a_customer_tier_is_the_keys_not_the_bodys(api: Api):
    """Stock protected for a tier goes only to keys an admin bound to that tier; a client key that names the
    tier in its body is refused and nothing is reserved."""
    from tests.integration.conftest import order_body

    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {}})
    sku, node = net.skus[0], net.node("DC-N")
    await api.ok("PUT", "/protected-stock", json=[{"node_id": node, "sku": sku, "tier": "key-account", "qty": 3}])
    body = order_body(net, [("SKU1", 5)], policy={"fill_or_kill": True})
    body["customer"]["tier"] = "key-account"
    r = await api.call("POST", "/orders", key=net.client_key, json=body)
    assert r.status_code == 403 and "tier" in r.json()["detail"], r.text
    r = await api.call("GET", f"/availability?skus={sku}&tier=key-account", key=net.client_key)
    assert r.status_code == 403, r.text
    r = await api.call("POST", "/promise", key=net.client_key, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code}, "lines": [{"sku": sku, "qty": 5}],
        "customer_tier": "key-account"})
    assert r.status_code == 403, r.text
    assert (await api.ok("GET", f"/availability?skus={sku}&tier=key-account"))["skus"][0]["available"] == 5

    # A key bound to the tier buys as that tier, named in the body or not.
    bound = await api.key("client", channel=net.channel, tier="key-account")
    seen = (await api.ok("GET", f"/availability?skus={sku}", key=bound))["skus"][0]["available"]
    assert seen == 5
    body = order_body(net, [("SKU1", 5)], policy={"fill_or_kill": True})
    placed = await api.ok("POST", "/orders", key=bound, json=body, expect=201)
    assert placed["status"] == "awaiting_release"
    assert (await api.ok("GET", f"/orders/{placed['order_id']}"))["customer"]["tier"] == "key-account"
    # Only client keys carry a tier.
    r = await api.call("POST", "/api-keys", json={"role": "partner", "node_id": node, "tier": "key-account"})
    assert r.status_code == 422


async def test_a_partner_reads_its_own_scorecard_only(api: Api):
    net = await make_network(api)
    north, south = net.node("DC-N"), net.node("DC-S")
    partner = await api.key("partner", node_id=north)
    assert (await api.ok("GET", f"/nodes/{south}", key=partner))["scorecard"] is None
    assert (await api.ok("GET", f"/nodes/{north}", key=partner))["scorecard"] is not None
    listed = {n["node_id"]: n for n in (await api.ok("GET", "/nodes", key=partner))["nodes"]}
    assert listed[north]["scorecard"] is not None and listed[south]["scorecard"] is None
    # A client sees the network (capabilities, capacity), not how each partner performs; staff see all.
    assert all(n["scorecard"] is None for n in (await api.ok("GET", "/nodes", key=net.client_key))["nodes"])
    assert (await api.ok("GET", f"/nodes/{south}"))["scorecard"]["by_status"] == {}


async def test_the_api_does_not_start_with_a_weak_admin_key(settings, db, temporal_env):
    from api.app import create_app

    app = create_app(settings.model_copy(update={"admin_key": "admin123"}), db=db, temporal=temporal_env.client)
    with pytest.raises(ValueError, match="NODAL_ADMIN_KEY"):
        async with app.router.lifespan_context(app):
            pass
    async with db.engine.connect() as conn:  # the weak key was never installed
        from api.auth import hash_key
        row = (await conn.execute(text("SELECT 1 FROM api_keys WHERE key_hash = :h"), {"h": hash_key("admin123")})).first()
    assert row is None


async def test_allowed_calls_answer_with_the_callers_own_only(api: Api, temporal_env, settings):
    """Past the role check: lists hold only the caller's channel or node, another's resource by id is refused,
    and another node's id inside a body is refused with nothing applied."""
    net, other = await make_network(api), await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    theirs, their_f = await released_to(api, temporal_env, settings, other, [("SKU1", 1)])
    mine_dc, their_dc = net.node("DC-N"), other.node("DC-N")
    partner = await api.key("partner", node_id=mine_dc)

    listed = (await api.ok("GET", "/orders?limit=500", key=net.client_key))["orders"]
    assert listed and {o["channel"] for o in listed} == {net.channel}
    assert (await api.call("GET", f"/orders/{theirs}", key=net.client_key)).status_code in (403, 404)
    work = (await api.ok("GET", "/fulfillments?limit=1000", key=partner))["fulfillments"]
    assert work and {w["node_id"] for w in work} == {mine_dc}
    assert (await api.call("GET", f"/fulfillments?node_id={their_dc}", key=partner)).status_code == 403
    assert (await api.call("POST", f"/fulfillments/{their_f['fulfillment_id']}/accept", key=partner)).status_code == 403
    assert (await api.call("GET", f"/inventory/{their_dc}", key=partner)).status_code == 403
    before = {i["sku"]: i["on_hand"] for i in (await api.ok("GET", f"/inventory/{their_dc}"))["items"]}
    r = await api.call("POST", "/inventory/adjustments", key=partner, json=[
        {"event_id": "mine-1", "node_id": mine_dc, "sku": net.skus[0], "delta": 1, "reason": "count"},
        {"event_id": "theirs-1", "node_id": their_dc, "sku": other.skus[0], "delta": -5, "reason": "count"}])
    assert r.status_code == 403
    assert {i["sku"]: i["on_hand"] for i in (await api.ok("GET", f"/inventory/{their_dc}"))["items"]} == before
    assert (await api.ok("GET", f"/inventory/{mine_dc}/{net.skus[0]}/ledger"))["entries"][0]["event_id"] != \
        f"feed:{mine_dc}:mine-1"  # the feed's own line did not land either


async def test_a_clients_availability_is_its_own_channels_view(api: Api):
    """A channel's buffer hides stock from it (a marketplace must not oversell): a client key that names no channel
    sees its own channel's view, not the whole pool; another channel's view is not its business."""
    net, other = await make_network(api), await make_network(api)
    await api.ok("PUT", f"/channels/{net.channel}", json={"buffer_units": 4})
    query = f"/availability?skus={net.skus[0]}&postal_code={net.postal_code}"
    pool = (await api.ok("GET", query))["skus"][0]["available"]
    mine = (await api.ok("GET", f"{query}&channel={net.channel}"))["skus"][0]["available"]
    assert mine < pool
    assert (await api.ok("GET", query, key=net.client_key))["skus"][0]["available"] == mine
    assert (await api.ok("GET", f"/channels/{net.channel}", key=net.client_key))["buffer_units"] == 4
    r = await api.call("GET", f"/channels/{other.channel}", key=net.client_key)
    assert r.status_code == 403 and r.json()["detail"], r.text
    partner = await api.key("partner", node_id=net.node("DC-N"))
    assert (await api.call("GET", f"/channels/{net.channel}", key=partner)).status_code == 403
