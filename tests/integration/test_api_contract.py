"""The public contract's promises about idempotency, ordering, access and bad input."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, make_network, order_body, tables_holding
from tests.integration.flow import fulfillment, released_to

pytestmark = pytest.mark.integration


async def count(db, sql: str, **params) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def test_duplicate_order_creation_returns_the_same_order(api: Api, temporal_env, db):
    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)], external_id="dup-1")
    first = await api.call("POST", "/orders", key=net.client_key, json=body)
    second = await api.call("POST", "/orders", key=net.client_key, json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["order_id"] == second.json()["order_id"]
    assert second.json()["status"] == "awaiting_release"
    oid = first.json()["order_id"]
    assert await count(db, "SELECT COUNT(*) FROM reservations WHERE order_id = :o", o=oid) == 1
    assert await count(db, "SELECT COUNT(*) FROM payments WHERE order_id = :o AND kind = 'authorization'", o=oid) == 1
    runs = [w async for w in temporal_env.client.list_workflows(f"WorkflowId = '{oid}'")]
    assert len(runs) == 1
    # The same external id on another channel is another order.
    other = await make_network(api)
    body2 = {**body, "channel": other.channel}
    body2["lines"] = order_body(other, [("SKU1", 1)])["lines"]
    r = await api.call("POST", "/orders", key=other.client_key, json=body2)
    assert r.status_code == 201 and r.json()["order_id"] != oid


async def test_repeated_and_out_of_order_milestones(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    key = await api.key("partner", node_id=net.node("DC-N"))
    fid = f["fulfillment_id"]
    r = await api.call("POST", f"/fulfillments/{fid}/ship", key=key)
    assert r.status_code == 409 and "out of order" in r.json()["detail"]
    assert (await api.ok("POST", f"/fulfillments/{fid}/accept", key=key))["changed"] is True
    assert (await api.ok("POST", f"/fulfillments/{fid}/accept", key=key))["changed"] is False
    r = await api.call("POST", f"/fulfillments/{fid}/pack", key=key)
    assert r.status_code == 409
    await api.ok("POST", f"/fulfillments/{fid}/pick", key=key, json={"lines": [{"line_id": "L1", "qty": 1}]})
    r = await api.call("POST", f"/fulfillments/{fid}/reject", key=key, json={"reason": "too late"})
    assert r.status_code == 409
    for step in ("pack", "ship", "deliver"):
        await api.ok("POST", f"/fulfillments/{fid}/{step}", key=key)
    await fulfillment(api, oid, net.node("DC-N"), status="delivered")
    # The fulfillment has finished: repeats stay no-ops, anything else is refused.
    again = await api.ok("POST", f"/fulfillments/{fid}/deliver", key=key)
    assert again["changed"] is False and again["status"] == "delivered"
    assert (await api.ok("POST", f"/fulfillments/{fid}/ship", key=key))["changed"] is False
    r = await api.call("POST", f"/fulfillments/{fid}/reject", key=key, json={"reason": "x"})
    assert r.status_code == 409
    order = await api.ok("GET", f"/orders/{oid}")
    assert [p["kind"] for p in order["payments"]].count("capture") == 1


async def test_partner_key_cannot_touch_another_nodes_fulfillment(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    other = await api.key("partner", node_id=net.node("DC-S"))
    r = await api.call("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=other)
    assert r.status_code == 403
    assert (await api.call("GET", f"/fulfillments/{f['fulfillment_id']}", key=other)).status_code == 403
    assert (await api.call("GET", f"/fulfillments?node_id={net.node('DC-N')}", key=other)).status_code == 403
    assert (await api.call("GET", f"/orders/{oid}", key=other)).status_code == 403
    assert (await api.call("PUT", f"/inventory/{net.node('DC-N')}", key=other,
                           json={"as_of": "2026-01-02T00:00:00Z", "items": []})).status_code == 403
    assert (await fulfillment(api, oid, net.node("DC-N")))["status"] == "released"
    own = (await api.ok("GET", "/fulfillments", key=other))["fulfillments"]
    assert all(x["node_id"] == net.node("DC-S") for x in own)
    # Another channel's client sees nothing of this order.
    stranger = await make_network(api)
    assert (await api.call("GET", f"/orders/{oid}", key=stranger.client_key)).status_code == 403
    r = await api.call("POST", f"/orders/{oid}/cancel", key=stranger.client_key, json={"reason": "x"})
    assert r.status_code == 403
    assert (await api.ok("GET", f"/orders/{oid}"))["status"] == "released"


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b["lines"][0].update(sku="NOPE"), "unknown sku"),
    (lambda b: b["lines"][0].update(qty=0), "greater than 0"),
    (lambda b: b["lines"][0]["delivery"].update(method="teleport"), "method"),
    (lambda b: b["lines"][0]["delivery"].pop("address"), "needs delivery.address"),
    (lambda b: b["lines"][0]["delivery"]["address"].update(postal_code="00000-nowhere"), "unknown postal code"),
    (lambda b: b["lines"][0]["delivery"].update(method="pickup"), "needs delivery.pickup_node_id"),
    (lambda b: b.update(lines=[]), "at least 1"),
    (lambda b: b.pop("customer"), "customer"),
    (lambda b: b["lines"][0].update(unit_price="-1"), "greater than or equal to 0"),
    (lambda b: b.update(surprise=True), "surprise"),
])
async def test_invalid_orders_are_refused_and_create_nothing(api: Api, db, mutate, reason):
    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)])
    mutate(body)
    r = await api.call("POST", "/orders", key=net.client_key, json=body)
    assert r.status_code == 422, r.text
    assert reason in r.text
    assert await count(db, "SELECT COUNT(*) FROM orders WHERE channel = :c", c=net.channel) == 0
    assert await count(db, "SELECT COUNT(*) FROM reservations WHERE node_id LIKE :p", p=f"{net.prefix}%") == 0


async def test_authentication_and_roles(api: Api, db):
    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)])
    assert (await api.call("POST", "/orders", key=None, json=body)).status_code == 401
    assert (await api.call("POST", "/orders", key="not-a-key", json=body)).status_code == 401
    # A key without its scheme is told what is wrong, not that it is missing.
    r = await api.call("GET", "/nodes", key=None, headers={"Authorization": net.client_key})
    assert r.status_code == 401 and "Bearer scheme is missing" in r.json()["detail"], r.text
    r = await api.call("GET", "/nodes", key=None, headers={"Authorization": "Bearer "})
    assert r.status_code == 401 and "missing API key" in r.json()["detail"], r.text
    support = await api.key("support")
    assert (await api.call("POST", "/orders", key=support, json=body)).status_code == 403
    assert (await api.call("PUT", f"/skus/{net.prefix}-X", key=net.client_key, json={"name": "x"})).status_code == 403
    wrong_channel = {**body, "channel": "someone-else"}
    assert (await api.call("POST", "/orders", key=net.client_key, json=wrong_channel)).status_code == 403
    assert await count(db, "SELECT COUNT(*) FROM orders WHERE channel = :c", c=net.channel) == 0
    # A revoked key stops working.
    created = await api.ok("POST", "/api-keys", json={"role": "support"})
    await api.ok("DELETE", f"/api-keys/{created['key_id']}")
    assert (await api.call("GET", "/nodes", key=created["key"])).status_code == 401
    from api.auth import hash_key

    async with db.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT key_hash FROM api_keys WHERE key_id = :k"),
                                     {"k": created["key_id"]})).scalar_one()
    # Only its hash is kept, and the key itself is nowhere in the database.
    holding = await tables_holding(db, created["key"])
    assert stored == hash_key(created["key"]) and holding == [], holding


async def test_inventory_feeds(api: Api):
    net = await make_network(api, stock={})
    node = net.node("DC-N")
    sku = f"{net.prefix}-SKU1"
    await api.ok("PUT", f"/inventory/{node}", json={"as_of": "2026-03-01T00:00:00Z", "items": [{"sku": sku, "on_hand": 7}]})
    old = await api.ok("PUT", f"/inventory/{node}", json={"as_of": "2026-02-01T00:00:00Z",
                                                          "items": [{"sku": sku, "on_hand": 1}]})
    assert old["ignored_older"] == [sku]
    adj = [{"event_id": f"{net.prefix}-e1", "node_id": node, "sku": sku, "delta": 3, "reason": "receipt"}]
    assert (await api.ok("POST", "/inventory/adjustments", json=adj))["applied"] == 1
    assert (await api.ok("POST", "/inventory/adjustments", json=adj))["duplicates"] == [f"{net.prefix}-e1"]
    avail = await api.ok("GET", f"/availability?skus={sku}&postal_code={net.postal_code}")
    entry = avail["skus"][0]
    assert entry["available"] == 10
    assert entry["nodes"] == [{"node_id": node, "on_hand": 10, "reserved": 0, "safety_stock": 0, "available": 10}]
    r = await api.call("POST", "/inventory/adjustments", json=[{**adj[0], "event_id": "x", "sku": "nope"}])
    assert r.status_code == 422


async def test_an_intake_left_without_a_workflow_is_started(api: Api, temporal_env, db, settings):
    """The API died after writing the intake row and before starting the workflow."""
    from datetime import timedelta

    from api.placement import record_intake, start_orphaned_orders
    from api.routes.orders import _lines, order_id_for
    from models.messages import Customer, OrderInput, OrderLineIn, Windows

    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)])
    oid = order_id_for(net.channel, body["external_id"])
    inp = OrderInput(order_id=oid, external_id=body["external_id"], channel=net.channel,
                     customer=Customer(id="c-9"), lines=_lines([OrderLineIn.model_validate(l) for l in body["lines"]]),
                     windows=Windows(remorse=settings.remorse_window, accept_timeout=settings.accept_timeout,
                                     return_window=settings.return_window))
    async with db.engine.begin() as conn:
        assert await record_intake(conn, inp)
        await conn.execute(text("UPDATE orders SET created_at = now() - interval '5 minutes' WHERE order_id = :o"),
                           {"o": oid})
    started = await start_orphaned_orders(db, temporal_env.client, settings, older_than=timedelta(seconds=1))
    assert oid in started
    from tests.integration.flow import order_status
    await order_status(api, oid, "awaiting_release")
    assert oid not in await start_orphaned_orders(db, temporal_env.client, settings, older_than=timedelta(seconds=1))
    # The client's retry of the same request finds the order.
    r = await api.call("POST", "/orders", key=net.client_key, json=body)
    assert r.status_code == 200 and r.json()["order_id"] == oid


async def test_the_api_serves_reads_and_keeps_orders_while_temporal_is_down(api: Api, db, pg_url):
    import httpx

    from api.app import create_app
    from nodal.client import connect
    from tests.integration.conftest import settings_for

    net = await make_network(api)
    settings = settings_for(pg_url, temporal_address="127.0.0.1:1", place_timeout_s=2)
    app = create_app(settings, db=db)
    app.state.db, app.state.temporal = db, await connect(settings, lazy=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal", timeout=30) as c:
        down = Api(c)
        health = await down.call("GET", "/healthz", key=None)
        assert health.status_code == 503 and health.json()["database"] == "ok"
        assert health.json()["temporal"].startswith("error")
        avail = await down.ok("GET", f"/availability?skus={net.skus[0]}", key=net.client_key)
        assert avail["skus"][0]["available"] == 20
        body = order_body(net, [("SKU1", 1)])
        placed = await down.ok("POST", "/orders", key=net.client_key, json=body, expect=201)
        assert placed["status"] == "received" and placed["promise"]["promised_by"] is None
        again = await down.call("POST", "/orders", key=net.client_key, json=body)
        assert again.status_code == 200 and again.json()["order_id"] == placed["order_id"]
        r = await down.call("POST", f"/orders/{placed['order_id']}/cancel", key=net.client_key, json={"reason": "x"})
        assert r.status_code == 503
    assert await count(db, "SELECT COUNT(*) FROM orders WHERE order_id = :o AND version = 0",
                       o=placed["order_id"]) == 1
