"""Pickup and curbside at a store, end to end on the real stack: ready with a pickup code, collection with the
right code (and a wrong one refused), a curbside check-in first in the store's queue, a partial collection, and a
no-show whose hold ends: the units back on the store's shelf, the authorization for them voided."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, Net, eventually, make_network, order_body
from tests.integration.flow import fulfillment, order_status, release

pytestmark = pytest.mark.integration

STORE_STOCK = {"STORE": {"SKU1": 5, "SKU2": 5}, "DC-N": {"SKU1": 10, "SKU2": 10}}


def pickup_body(net: Net, lines, method: str = "pickup") -> dict:
    body = order_body(net, lines)
    for l in body["lines"]:
        l["delivery"] = {"method": method, "pickup_node_id": net.node("STORE")}
    return body


async def placed_pickup(api: Api, env, settings, net: Net, lines, method: str = "pickup") -> tuple[str, dict]:
    placed = await api.ok("POST", "/orders", key=net.client_key, json=pickup_body(net, lines, method), expect=201)
    oid = placed["order_id"]
    await release(api, env, oid, settings)
    return oid, await fulfillment(api, oid, net.node("STORE"))


async def sent(db, order_id: str) -> dict[str, dict]:
    """The customer notifications of an order, by event (their detail as the provider got it)."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT response->>'event' AS e, response->'detail' AS d FROM adapter_calls"
            " WHERE system = 'notifications' AND response->>'order_id' = :o"), {"o": order_id})).all()
    return {r.e: r.d for r in rows}


async def on_hand(api: Api, node: str, sku: str) -> dict:
    items = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}
    return items[sku]


async def made_ready(api: Api, db, f: dict, partner: str, order_id: str) -> str:
    fid = f["fulfillment_id"]
    for step in ("accept", "pick", "ready"):
        body = {"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]} if step == "pick" else None
        await api.ok("POST", f"/fulfillments/{fid}/{step}", key=partner, json=body)
    notes = await eventually(lambda: _with(sent(db, order_id), "ready_for_pickup"), what="the pickup code sent")
    return notes["ready_for_pickup"]["pickup_code"]


async def _with(coro, event):
    got = await coro
    return got if event in got else None


async def test_pickup_ready_then_collected_with_the_right_code(api: Api, temporal_env, settings, db):
    net = await make_network(api, stock=STORE_STOCK)
    store, sku = net.node("STORE"), f"{net.prefix}-SKU1"
    oid, f = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 2)])
    assert f["kind"] == "pickup" and f["method"] == "pickup"
    partner = await api.key("partner", node_id=store)
    fid = f["fulfillment_id"]

    # A pickup has no parcel path: pack and ship are not its milestones.
    await api.ok("POST", f"/fulfillments/{fid}/accept", key=partner)
    await api.ok("POST", f"/fulfillments/{fid}/pack", key=partner, expect=409)
    code = await made_ready(api, db, f, partner, oid)
    assert len(code) == 6 and code.isdigit()
    order = await order_status(api, oid, "ready_for_pickup")
    ready = next(x for x in order["fulfillments"] if x["fulfillment_id"] == fid)
    assert ready["status"] == "ready_for_pickup" and ready["ready_at"] and ready["hold_until"]
    assert code not in str(order)  # the code is the customer's: not in the order, its timeline or the queue
    assert code not in str(await api.ok("GET", f"/fulfillments?node_id={store}", key=partner))

    # A wrong code changes nothing.
    wrong = "000000" if code != "000000" else "111111"
    r = await api.call("POST", f"/fulfillments/{fid}/collect", key=partner, json={"pickup_code": wrong})
    assert r.status_code == 422 and "wrong pickup code" in r.json()["detail"]
    assert (await api.ok("GET", f"/fulfillments/{fid}", key=partner))["status"] == "ready_for_pickup"
    assert (await on_hand(api, store, sku))["on_hand"] == 5

    done = await api.ok("POST", f"/fulfillments/{fid}/collect", key=partner, json={"pickup_code": code})
    assert done["status"] == "collected" and done["changed"]
    again = await api.ok("POST", f"/fulfillments/{fid}/collect", key=partner, json={"pickup_code": code})
    assert again["changed"] is False
    order = await order_status(api, oid, "delivered")
    assert order["fulfillments"][0]["delivered_at"] and order["return_deadline"]
    assert [p["amount"] for p in order["payments"] if p["kind"] == "capture"] == ["20.00"]
    item = await on_hand(api, store, sku)
    assert item["on_hand"] == 3 and item["reserved"] == 0
    notes = await sent(db, oid)
    assert "shipped" not in notes and {"ready_for_pickup", "collected"} <= set(notes)
    async with db.engine.connect() as conn:
        labels = (await conn.execute(text(
            "SELECT COUNT(*) FROM adapter_calls WHERE system = 'carriers' AND idempotency_key LIKE :k"),
            {"k": f"%{fid}%"})).scalar()
    assert labels == 0  # no carrier label for a pickup
    events = [t["event"] for t in order["timeline"]]
    assert "fulfillment_ready_for_pickup" in events and "fulfillment_collected" in events
    # The order can be returned like any delivered order.
    ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "changed mind"})
    assert ret["status"] == "requested"


async def test_curbside_arrival_goes_first_in_the_queue_and_partial_collection_cancels_the_rest(
        api: Api, temporal_env, settings, db):
    net = await make_network(api, stock=STORE_STOCK)
    store = net.node("STORE")
    await api.ok("PATCH", f"/nodes/{store}", json={"capabilities": ["ship", "pickup", "curbside"]})
    partner = await api.key("partner", node_id=store)
    first, f1 = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 1)], method="curbside")
    second, f2 = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 1), ("SKU2", 2)],
                                     method="curbside")

    # Batch picking: both orders' units to pick, by SKU.
    queue = await api.ok("GET", f"/fulfillments?node_id={store}", key=partner)
    ours = {f1["fulfillment_id"], f2["fulfillment_id"]}
    sku1 = next(i for i in queue["pick_list"] if i["sku"] == f"{net.prefix}-SKU1")
    assert sku1["qty"] == 2 and {p["fulfillment_id"] for p in sku1["picks"]} == ours

    code = await made_ready(api, db, f2, partner, second)
    # The second order's customer checks in from the car (the channel's key); it goes first in the queue.
    other = await api.key("client", channel=f"{net.prefix}-other")
    r = await api.call("POST", f"/fulfillments/{f2['fulfillment_id']}/arrived", key=other, json={"bay": "3"})
    assert r.status_code == 403
    r = await api.call("POST", f"/fulfillments/{f2['fulfillment_id']}/ready", key=net.client_key)
    assert r.status_code == 403  # a client checks in; the store makes ready
    arrived = await api.ok("POST", f"/fulfillments/{f2['fulfillment_id']}/arrived", key=net.client_key,
                           json={"bay": "3", "note": "blue van"})
    assert arrived["status"] == "ready_for_pickup" and arrived["changed"]
    queue = await api.ok("GET", f"/fulfillments?node_id={store}", key=partner)
    assert queue["fulfillments"][0]["fulfillment_id"] == f2["fulfillment_id"]
    assert queue["fulfillments"][0]["arrival"]["bay"] == "3"
    order = await api.ok("GET", f"/orders/{second}")
    assert "customer_arrived" in [t["event"] for t in order["timeline"]]

    # The customer takes SKU1 and refuses both units of SKU2: that line is cancelled and its money released.
    done = await api.ok("POST", f"/fulfillments/{f2['fulfillment_id']}/collect", key=partner,
                        json={"pickup_code": code, "lines": [{"line_id": "L1", "qty": 1}]})
    assert done["status"] == "collected"
    order = await order_status(api, second, "delivered")
    lines = {l["line_id"]: l for l in order["lines"]}
    assert lines["L2"]["cancelled_qty"] == 2 and lines["L1"]["delivered_qty"] == 1
    pays = [(p["kind"], p["amount"]) for p in order["payments"]]
    assert ("capture", "10.00") in pays and ("void", "20.00") in pays
    sku2 = await on_hand(api, store, f"{net.prefix}-SKU2")
    assert sku2["on_hand"] == 5 and sku2["reserved"] == 0  # the refused units are back on the shelf
    assert first  # the first order waits untouched
    assert (await api.ok("GET", f"/fulfillments/{f1['fulfillment_id']}"))["status"] == "released"


async def test_no_show_expires_restocks_and_voids(api: Api, temporal_env, settings, db):
    net = await make_network(api, stock=STORE_STOCK)
    store, sku = net.node("STORE"), f"{net.prefix}-SKU1"
    # This store holds pickups for two days (its calendar), not the default week.
    await api.ok("PATCH", f"/nodes/{store}", json={"calendar": {"pickup_hold": "2d"}})
    oid, f = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 2)])
    partner = await api.key("partner", node_id=store)
    await made_ready(api, db, f, partner, oid)
    ready = await api.ok("GET", f"/fulfillments/{f['fulfillment_id']}")
    from datetime import datetime
    held = datetime.fromisoformat(ready["hold_until"]) - datetime.fromisoformat(ready["ready_at"])
    assert held == timedelta(days=2)
    assert (await on_hand(api, store, sku))["reserved"] == 2

    handle = temporal_env.client.get_workflow_handle(f["fulfillment_id"])
    await temporal_env.fast_forward(handle, timedelta(days=1, hours=12))
    assert "pickup_reminder" in await eventually(lambda: _with(sent(db, oid), "pickup_reminder"), what="reminder")
    assert (await api.ok("GET", f"/fulfillments/{f['fulfillment_id']}"))["status"] == "ready_for_pickup"
    await temporal_env.fast_forward(handle, timedelta(days=1))

    order = await order_status(api, oid, "cancelled")
    assert order["fulfillments"][0]["status"] == "expired"
    assert order["lines"][0]["cancelled_qty"] == 2
    pays = [(p["kind"], p["amount"]) for p in order["payments"]]
    assert ("void", "20.00") in pays and not any(k == "capture" for k, _ in pays)
    item = await on_hand(api, store, sku)
    assert item["on_hand"] == 5 and item["reserved"] == 0 and item["available"] == 5
    assert "pickup_expired" in await sent(db, oid)
    r = await api.call("POST", f"/fulfillments/{f['fulfillment_id']}/collect", key=partner,
                       json={"pickup_code": "123456"})
    assert r.status_code == 409


async def test_ship_to_store_transfer_then_collection(api: Api, temporal_env, settings, db):
    """The pickup store has none: a DC sends the units (a transfer leg with its own milestones), in transit they
    are sellable nowhere, received at the store they are held for the pickup, which goes on from ready."""
    net = await make_network(api, stock={"DC-N": {"SKU1": 10}, "DC-S": {"SKU1": 10}})
    store, dc, sku = net.node("STORE"), net.node("DC-N"), f"{net.prefix}-SKU1"
    quote = await api.ok("POST", "/promise", key=net.client_key, json={
        "channel": net.channel, "lines": [{"sku": sku, "qty": 2}], "destination": {"postal_code": net.postal_code},
        "methods": ["pickup"]})
    option = next(o for o in quote["options"] if o["method"] == "pickup" and o["node_id"] == store)
    placed = await api.ok("POST", "/orders", key=net.client_key, json=pickup_body(net, [("SKU1", 2)]), expect=201)
    oid = placed["order_id"]
    # The quote counts the transfer's transit (days, not the store's processing hours), as the order's promise.
    assert placed["promise"]["promised_by"][:10] == option["promised_by"][:10]
    assert placed["promise"]["promised_by"][:10] > placed["created_at"][:10] if "created_at" in placed else True
    await release(api, temporal_env, oid, settings)
    order = await api.ok("GET", f"/orders/{oid}")
    decision = next(t for t in order["timeline"] if t["event"] == "routing_decision")
    assert {c["node_id"]: c["outcome"] for c in decision["detail"]["candidates"]}[dc] == "chosen"
    leg = await fulfillment(api, oid, dc)
    assert leg["kind"] == "transfer" and leg["to_node_id"] == store

    dc_key, store_key = await api.key("partner", node_id=dc), await api.key("partner", node_id=store)
    fid = leg["fulfillment_id"]
    await api.ok("POST", f"/fulfillments/{fid}/ready", key=dc_key, expect=409)  # not a transfer's milestone
    for step in ("accept", "pick", "pack", "ship"):
        body = {"lines": [{"line_id": "L1", "qty": 2}]} if step == "pick" else None
        await api.ok("POST", f"/fulfillments/{fid}/{step}", key=dc_key, json=body)
    assert (await api.ok("GET", f"/fulfillments/{fid}"))["status"] == "in_transit"
    # In transit: gone from the DC, not yet on the store's shelf, and shown to the store as coming.
    assert (await on_hand(api, dc, sku))["on_hand"] == 8
    arriving = await on_hand(api, store, sku)
    assert arriving["in_transit"] == 2 and arriving["available"] == 0
    queue = await api.ok("GET", f"/fulfillments?node_id={store}", key=store_key)
    assert fid in [f["fulfillment_id"] for f in queue["fulfillments"]]

    # Only the receiving store records the receipt.
    await api.ok("POST", f"/fulfillments/{fid}/receive", key=dc_key, expect=403)
    got = await api.ok("POST", f"/fulfillments/{fid}/receive", key=store_key)
    assert got["status"] == "received_at_store"
    pickup = await fulfillment(api, oid, store, status="picked")
    assert pickup["kind"] == "pickup"
    held = await on_hand(api, store, sku)
    assert held["on_hand"] == 2 and held["reserved"] == 2 and held["available"] == 0 and held["in_transit"] == 0

    code = None
    await api.ok("POST", f"/fulfillments/{pickup['fulfillment_id']}/ready", key=store_key)
    notes = await eventually(lambda: _with(sent(db, oid), "ready_for_pickup"), what="the pickup code sent")
    code = notes["ready_for_pickup"]["pickup_code"]
    await order_status(api, oid, "ready_for_pickup")
    await api.ok("POST", f"/fulfillments/{pickup['fulfillment_id']}/collect", key=store_key, json={"pickup_code": code})
    order = await order_status(api, oid, "delivered")
    assert [p["amount"] for p in order["payments"] if p["kind"] == "capture"] == ["20.00"]
    left = await on_hand(api, store, sku)
    assert left["on_hand"] == 0 and left["reserved"] == 0
    events = [t["event"] for t in order["timeline"]]
    assert "fulfillment_in_transit" in events and "fulfillment_received_at_store" in events


async def test_a_store_that_picks_short_feeds_its_scorecard(api: Api, temporal_env, settings, db):
    """Ship-from-store and pickups count for the store like any partner: a collected pickup is accepted and
    filled, a short pick lowers the fill rate (the rest is sourced again)."""
    net = await make_network(api, stock=STORE_STOCK)
    store = net.node("STORE")
    partner = await api.key("partner", node_id=store)
    oid, f = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 2)])
    code = await made_ready(api, db, f, partner, oid)
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/collect", key=partner, json={"pickup_code": code})
    await order_status(api, oid, "delivered")
    card = (await api.ok("GET", f"/nodes/{store}", key=partner))["scorecard"]
    assert card["fulfillments"] == 1 and card["acceptance_rate"] == 1.0 and card["fill_rate"] == 1.0

    short, f2 = await placed_pickup(api, temporal_env, settings, net, [("SKU2", 2)])
    await api.ok("POST", f"/fulfillments/{f2['fulfillment_id']}/accept", key=partner)
    await api.ok("POST", f"/fulfillments/{f2['fulfillment_id']}/pick", key=partner,
                 json={"lines": [{"line_id": "L1", "qty": 1}]})
    card = (await api.ok("GET", f"/nodes/{store}", key=partner))["scorecard"]
    assert card["fulfillments"] >= 2 and card["acceptance_rate"] == 1.0 and card["fill_rate"] == 0.75


async def test_a_thousand_line_pickup_is_made_ready_and_collected_in_part(api: Api, temporal_env, settings, db):
    """A will-call order at its size: 1,000 lines at one store's counter, the customer refusing 200 of them."""
    net = await make_network(api, stock={"STORE": {"SKU1": 1500}, "DC-N": {"SKU1": 10}})
    store, sku = net.node("STORE"), f"{net.prefix}-SKU1"
    body = pickup_body(net, [("SKU1", 1)] * 1000)
    body["policy"] = {"max_splits": 0}
    placed = await api.ok("POST", "/orders", key=net.client_key, json=body, expect=201)
    oid = placed["order_id"]
    await release(api, temporal_env, oid, settings)
    f = await fulfillment(api, oid, store)
    assert len(f["lines"]) == 1000
    partner = await api.key("partner", node_id=store)
    code = await made_ready(api, db, f, partner, oid)
    kept = [{"line_id": l["line_id"], "qty": 1} for l in f["lines"][200:]]
    done = await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/collect", key=partner,
                        json={"pickup_code": code, "lines": kept})
    assert done["status"] == "collected"
    order = await order_status(api, oid, "delivered")
    assert sum(l["delivered_qty"] for l in order["lines"]) == 800
    assert sum(l["cancelled_qty"] for l in order["lines"]) == 200
    assert [p["amount"] for p in order["payments"] if p["kind"] == "capture"] == ["8000.00"]
    item = await on_hand(api, store, sku)
    assert item["on_hand"] == 700 and item["reserved"] == 0  # the refused 200 back on the shelf
