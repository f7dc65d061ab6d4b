"""Paths that once dropped a guarantee, each held now: reservations before confirmation, money before change,
the order's policy on every reroute, returns only where they can land, authorizations that expire."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from api.routes.orders import order_id_for
from inventory import service
from models.messages import FulfillmentEvent, ReceiveIn, ReceiveLineIn, ReturnIn, ReturnLineIn
from models.status import FulfillmentStatus
from tests.integration.conftest import NODES, Api, eventually, make_network, order_body, own_stack
from tests.integration.flow import b2b_key, fulfillment, order_status, place, release, released_to, walk
from tests.integration.test_replay import decline_authorization

pytestmark = pytest.mark.integration


async def reserved(db, order_id: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT COALESCE(SUM(qty), 0) FROM reservations WHERE order_id = :o AND status IN ('held', 'committed')"),
            {"o": order_id})).scalar_one())


def payments(order: dict) -> list[tuple[str, str, str]]:
    return [(p["kind"], p["amount"], p["status"]) for p in order["payments"]]


def events(order: dict) -> list[str]:
    return [t["event"] for t in order["timeline"]]


# ---------------------------------------------------------------- confirmed only with units reserved
class Competitor(Interceptor):
    """A rival who always wins the race: between every plan and its reservation it takes the stock off the shelf
    (a real adjustment in PostgreSQL), and puts it back once the reservation has failed."""

    def __init__(self, db, node: str, sku: str, units: int):
        self.db, self.node, self.sku, self.units, self.raced = db, node, sku, units, 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        rival = self

        class Race(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                if activity.info().activity_type != "inventory.reserve" or not input.args[0].fulfillments:
                    return await self.next.execute_activity(input)
                rival.raced += 1
                await rival.move(-rival.units)
                try:
                    return await self.next.execute_activity(input)
                finally:
                    await rival.move(rival.units)

        return Race(next)

    async def move(self, delta: int) -> None:
        async with self.db.engine.begin() as conn:
            await service.adjust(conn, self.node, self.sku, delta, "competitor", f"race:{uuid.uuid4().hex}")


async def test_an_order_is_never_confirmed_without_its_units_reserved(temporal_env, db, pg_url):
    rival = Competitor(db, "", "", 5)
    async with own_stack(temporal_env, db, pg_url, "nodal-race", interceptors=[rival]) as api:
        net = await make_network(api, stock={"DC-N": {"SKU1": 5}})
        rival.node, rival.sku = net.node("DC-N"), net.skus[0]
        placed = await place(api, net, [("SKU1", 2)])
        order = await api.ok("GET", f"/orders/{placed['order_id']}")
    assert rival.raced >= 3
    assert placed["status"] == "rejected" and order["status"] == "rejected", (placed, events(order))
    assert "stock kept changing" in next(t for t in order["timeline"] if t["event"] == "rejected")["detail"]["reason"]
    assert events(order).count("reservation_conflict") == 3
    assert await reserved(db, placed["order_id"]) == 0
    assert [p for p in payments(order) if p[0] == "authorization"] == []  # never charged for what it could not hold


async def test_a_race_for_scarce_stock_confirms_exactly_what_was_reserved(api: Api, db):
    """Forty units, sixty customers at once: every confirmed order holds its unit, the rest are refused."""
    net = await make_network(api, stock={"DC-N": {"SKU1": 40}})
    bodies = [order_body(net, [("SKU1", 1)]) for _ in range(60)]
    answers = await asyncio.gather(*(api.ok("POST", "/orders", key=net.client_key, json=b, expect=201) for b in bodies))
    confirmed = [a for a in answers if a["status"] == "awaiting_release"]
    assert len(confirmed) <= 40 and {a["status"] for a in answers} <= {"awaiting_release", "rejected"}
    for a in confirmed:
        assert a["promise"]["promised_by"] and await reserved(db, a["order_id"]) == 1, a
    for a in answers:
        if a["status"] == "rejected":
            assert await reserved(db, a["order_id"]) == 0


# ---------------------------------------------------------------- money before change
async def test_a_declined_authorization_leaves_a_modified_order_as_it_was(api: Api, db):
    net = await make_network(api)
    placed = await place(api, net, [("SKU1", 1)])
    oid = placed["order_id"]
    await decline_authorization(db, f"{oid}:auth:2")
    bigger = {"lines": [{"line_id": "L1", "sku": net.skus[0], "qty": 3, "unit_price": "10.00",
                         "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}]}
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json=bigger)
    assert r.status_code == 409 and "declined" in r.json()["detail"], r.text
    order = await api.ok("GET", f"/orders/{oid}")
    assert [(l["line_id"], l["qty"]) for l in order["lines"]] == [("L1", 1)]
    assert await reserved(db, oid) == 1
    assert ("authorization", "10.00", "succeeded") in payments(order)
    assert not [p for p in payments(order) if p[0] == "void"]  # the first authorization stays in force


async def test_a_declined_authorization_leaves_a_b2b_order_as_it_was_after_release(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    wanted = datetime.now(timezone.utc).date() + timedelta(days=20)
    placed = await place(api, net, [("SKU1", 4)], requested_delivery_date=wanted.isoformat(),
                         customer={"id": "acme"}, key=await b2b_key(api, net))
    oid = placed["order_id"]
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window)
    await eventually(lambda: _has(api, oid, "released"), what="released")
    await decline_authorization(db, f"{oid}:auth:2")
    more = {"lines": [{"line_id": "L1", "sku": net.skus[0], "qty": 6, "unit_price": "10.00",
                       "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}],
            "requested_delivery_date": (wanted + timedelta(days=5)).isoformat()}
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json=more)
    assert r.status_code == 409 and "declined" in r.json()["detail"], r.text
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["lines"][0]["qty"] == 4 and order["requested_delivery_date"] == wanted.isoformat()
    assert await reserved(db, oid) == 4
    # The workflow's own state too, not only what it last mirrored.
    state = await temporal_env.client.get_workflow_handle(oid).query("state")
    assert [(l["line_id"], l["qty"]) for l in state["lines"]] == [("L1", 4)]
    assert state["requested_delivery_date"] == wanted.isoformat()


# ---------------------------------------------------------------- the order's policy on every reroute
async def test_a_reroute_keeps_a_ship_complete_order_whole(api: Api, temporal_env, settings):
    nodes = {**NODES, "DC-W": dict(type="dc", lat=39.74, lon=-104.99, capabilities=["ship"])}
    net = await make_network(api, nodes=nodes, stock={"DC-N": {"SKU1": 5, "SKU2": 5}, "DC-S": {"SKU1": 5},
                                                      "DC-W": {"SKU2": 5}})
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1), ("SKU2", 1)],
                               policy={"ship_complete": True})
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/reject", key=await api.key("partner", node_id=net.node("DC-N")),
                 json={"reason": "flooded"})
    order = await order_status(api, oid, "backordered")
    # No single node has both lines now: the order waits whole rather than ship in two parcels.
    assert [x["node_id"] for x in order["fulfillments"]] == [net.node("DC-N")]
    decision = [t for t in order["timeline"] if t["event"] == "routing_decision"][-1]["detail"]
    assert not decision["feasible"] and "ship complete" in decision["why"]


# ---------------------------------------------------------------- returns only where they can land
async def test_a_return_to_a_node_that_cannot_take_it_is_refused(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 2)])
    await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
    await order_status(api, oid, "delivered")
    for body, why in (({"node_id": "NO-SUCH-NODE", "method": "ship_back"}, "unknown node"),
                      ({"node_id": net.node("DC-N"), "method": "in_store"}, "does not take in store returns"),
                      ({"node_id": net.node("STORE"), "method": "ship_back"}, "does not take ship back returns")):
        r = await api.call("POST", f"/orders/{oid}/returns", key=net.client_key,
                           json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "x", **body})
        assert r.status_code == 422 and why in r.json()["detail"], (body, r.text)
    assert (await api.ok("GET", f"/orders/{oid}"))["returns"] == []
    # A store that takes returns over the counter may.
    await api.ok("PUT", f"/nodes/{net.node('STORE')}", json={
        "name": "STORE", "postal_code": net.postal_code, "type": "store", "lat": 41.88, "lon": -87.63,
        "capabilities": ["ship", "pickup", "returns"], "handling_cost": "0.50", "processing_time": "1h",
        "cutoff_time": "16:00", "timezone": "America/Chicago"})
    await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                 json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "x", "method": "in_store",
                       "node_id": net.node("STORE")})


async def test_a_return_that_cannot_land_fails_fast_and_frees_the_order(api: Api, temporal_env, settings):
    """Past the API (support's CLI sends Updates straight to the workflow): the restock's integrity error is not
    retried forever while the order's lock is held; the order answers the next request at once."""
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 2)])
    await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
    await order_status(api, oid, "delivered")
    handle = temporal_env.client.get_workflow_handle(oid)
    ret = await handle.execute_update("request_return", ReturnIn(
        lines=[ReturnLineIn(line_id="L1", qty=1)], reason="x", node_id="NO-SUCH-NODE"))
    got = ReceiveIn(lines=[ReceiveLineIn(line_id="L1", qty=1, disposition="sellable")])
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await asyncio.wait_for(handle.execute_update("receive_return", args=[ret["return_id"], got]), timeout=30)
    assert "cannot be received" in str(failed.value.cause)
    good = await asyncio.wait_for(api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                                         json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "y"}), timeout=30)
    refunded = await api.ok("POST", f"/returns/{good['return_id']}/receive",
                            json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
    assert refunded["status"] == "refunded"


async def test_a_return_that_comes_with_the_delivery_is_judged_after_it(temporal_env, db, pg_url):
    """A worker can mirror a delivery into the read model and then have its workflow task retried (a signal came
    meanwhile); the customer, told "delivered", asks for a return that lands in the same task as the delivery's
    event. The Update is judged after the event, not refused with "nothing has been delivered yet"."""
    async with own_stack(temporal_env, db, pg_url, "nodal-with-delivery") as api:
        net = await make_network(api)
        oid, f = await released_to(api, temporal_env, api.settings, net, [("SKU1", 2)])
        await walk(api, f, await api.key("partner", node_id=net.node("DC-N")), upto="ship")
        await order_status(api, oid, "shipped")
        async with api.worker_down():
            await temporal_env.client.get_workflow_handle(oid).signal("fulfillment_event", FulfillmentEvent(
                fulfillment_id=f["fulfillment_id"], node_id=f["node_id"], status=FulfillmentStatus.delivered,
                at=datetime.now(timezone.utc), seq=1_000))
            asked = asyncio.create_task(api.call("POST", f"/orders/{oid}/returns", key=net.client_key,
                                                 json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "x"}))
            # Judged by its handler too, a bad request in that task is still refused and changes nothing.
            too_many = asyncio.create_task(api.call("POST", f"/orders/{oid}/returns", key=net.client_key,
                                                    json={"lines": [{"line_id": "L1", "qty": 3}], "reason": "x"}))
            await asyncio.sleep(1)  # the Updates wait on the server for the next worker, beside the signal
            assert not asked.done() and not too_many.done()
        answer, refused = await asyncio.wait_for(asyncio.gather(asked, too_many), timeout=30)
        assert answer.status_code == 201, answer.text
        assert refused.status_code in (409, 422) and "L1" in refused.json()["detail"], refused.text
        order = await order_status(api, oid, "delivered")
        assert [r["return_id"] for r in order["returns"]] == [answer.json()["return_id"]]
        assert [(l["line_id"], l["qty"]) for l in order["returns"][0]["lines"]] == [("L1", 1)]


# ---------------------------------------------------------------- authorizations expire
async def _b2b_to_release_day(api: Api, env, settings, net, days: int = 20) -> tuple[str, Any]:
    wanted = datetime.now(timezone.utc).date() + timedelta(days=days)
    oid = (await place(api, net, [("SKU1", 2)], requested_delivery_date=wanted.isoformat(),
                       customer={"id": "acme"}, key=await b2b_key(api, net)))["order_id"]
    handle = env.client.get_workflow_handle(oid)
    await env.fast_forward(handle, settings.remorse_window)
    released = await eventually(lambda: _event(api, oid, "released"), what="the remorse window to end")
    until = datetime.fromisoformat(list(released["detail"]["held_until"].values())[0])
    await env.fast_forward(handle, until - datetime.fromisoformat(released["at"]))
    return oid, handle


async def test_an_order_that_waited_authorizes_again_before_its_release(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, _ = await _b2b_to_release_day(api, temporal_env, settings, net)
    f = await fulfillment(api, oid, net.node("DC-N"))
    order = await api.ok("GET", f"/orders/{oid}")
    assert [p[0] for p in payments(order)] == ["authorization", "authorization", "void"]
    assert all(p[2] == "succeeded" for p in payments(order))
    await walk(api, f, await api.key("partner", node_id=net.node("DC-N")), upto="ship")
    order = await order_status(api, oid, "shipped")
    assert ("capture", "20.00", "succeeded") in payments(order)


async def test_a_declined_renewal_holds_the_order_then_cancels_it(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    wanted_oid = order_id_for(net.channel, "b2b-hold")
    for n in range(2, 12):  # the card stays declined: the renewal and every retry during the hold
        await decline_authorization(db, f"{wanted_oid}:auth:{n}")
    wanted = datetime.now(timezone.utc).date() + timedelta(days=20)
    body = order_body(net, [("SKU1", 2)], external_id="b2b-hold", requested_delivery_date=wanted.isoformat(),
                      customer={"id": "acme", "tier": "b2b", "email": "buyer@example.com"})
    oid = (await api.ok("POST", "/orders", key=await b2b_key(api, net), json=body, expect=201))["order_id"]
    assert oid == wanted_oid
    handle = temporal_env.client.get_workflow_handle(oid)
    await temporal_env.fast_forward(handle, settings.remorse_window)
    released = await eventually(lambda: _event(api, oid, "released"), what="the remorse window to end")
    until = datetime.fromisoformat(list(released["detail"]["held_until"].values())[0])
    await temporal_env.fast_forward(handle, until - datetime.fromisoformat(released["at"]))
    hold = await eventually(lambda: _event(api, oid, "payment_hold"), what="the payment hold")
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["fulfillments"] == [] and await reserved(db, oid) == 2  # nothing released, the stock kept
    async with db.engine.connect() as conn:
        told = (await conn.execute(text(
            "SELECT COUNT(*) FROM adapter_calls WHERE system = 'notifications' AND response->>'order_id' = :o"
            " AND response->>'event' = 'payment_required'"), {"o": oid})).scalar_one()
    assert told == 1
    # The hold ends with no good authorization: the order is cancelled and its stock goes back.
    await temporal_env.fast_forward(handle, settings.payment_hold + timedelta(hours=1))
    order = await order_status(api, oid, "cancelled")
    assert await reserved(db, oid) == 0 and hold["detail"]["until"]
    assert ("void", "20.00", "succeeded") in payments(order)
    assert [p[0] for p in payments(order)].count("authorization") > 2  # retried during the hold


async def test_a_capture_on_an_expired_authorization_is_authorized_again(api: Api, temporal_env, settings):
    """The node took eight days to ship: the gateway refuses the capture; the order authorizes again and captures."""
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    key = await api.key("partner", node_id=net.node("DC-N"))
    await walk(api, f, key, upto="pack")
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(f["fulfillment_id"]), timedelta(days=8))
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/ship", key=key, json={})

    async def captured():
        o = await api.ok("GET", f"/orders/{oid}")
        return o if ("capture", "10.00", "succeeded") in payments(o) else None
    order = await eventually(captured, what="the capture on a new authorization")
    assert ("capture", "10.00", "declined") in payments(order)
    assert [p[0] for p in payments(order)].count("authorization") == 2


async def _event(api: Api, order_id: str, event: str):
    return next((t for t in (await api.ok("GET", f"/orders/{order_id}"))["timeline"] if t["event"] == event), None)


async def _has(api: Api, order_id: str, event: str):
    return await _event(api, order_id, event) is not None or None
