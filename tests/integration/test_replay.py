"""Determinism: every workflow path replays, today's runs and histories recorded by earlier code.

Histories under tests/replay/ were recorded from real runs of each path: v1/ on the order workflow as it was
before its rebuild (those orders keep running on the frozen v1 types, workflows/legacy), v2/ on today's Order
and Fulfillment types. A change to the workflows that would break an order already running fails here.
Record the v2 histories again (only when a change is meant to be incompatible and no such order can be
running), or a new path's alone:

    NODAL_RECORD_HISTORIES=1 pytest tests/integration/test_replay.py
    NODAL_RECORD_HISTORIES=carrier_exception pytest tests/integration/test_replay.py -k every_path
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import pytest
from sqlalchemy import text
from temporalio import workflow
from temporalio.client import WorkflowHistory

from api.routes.orders import order_id_for
from tests.integration.conftest import Api, Net, eventually, make_network, order_body
from tests.integration.flow import b2b_key, fulfillment, order_status, place, release, walk
from tests.replay_check import HISTORIES, recorded, replay, self_contained

pytestmark = pytest.mark.integration
PATHS = ("happy", "cancel", "reroute", "short_pick", "return", "modify", "b2b_change", "hold", "digital",
         "backorder", "at_risk", "reorchestrate", "accept_timeout", "payment_decline", "pickup", "transfer",
         "exchange", "carrier_exception")
# The v1 types had no store flows, exchanges or carrier exceptions.
NEW_IN_V2 = {"pickup", "transfer", "exchange", "carrier_exception"}
# The order's hot path runs as local activities (no round trip through the server): none of these may be
# scheduled as an ordinary activity by a new order.
LOCAL = {"order.capture", "routing.plan", "inventory.reserve", "payments.call", "notify.send", "read_model.record_order"}


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_recorded_histories_replay_on_todays_code(version):
    histories = recorded(version)
    paths = {h.workflow_id.split("/")[1].split(".")[0] for h in histories}
    expected = set(PATHS) - (set() if version == "v2" else NEW_IN_V2)
    assert paths == expected, f"a path has no recorded history: {sorted(expected - paths)}"
    assert all(self_contained(h) for h in histories)
    failures = await replay(histories)
    assert not failures, failures


def test_recorded_histories_replay_under_another_hash_seed():
    """In a fresh interpreter whose string hashing (set order) differs from this one's."""
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "4242"):
        run = subprocess.run([sys.executable, "-m", "tests.replay_check"], cwd=root, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "FAILED" not in run.stdout and " recorded histories replay" in run.stdout


async def test_an_unguarded_change_breaks_recorded_orders(monkeypatch):
    """The control: taking the patched branch on old histories (as if the change had no patched guard) fails."""
    monkeypatch.setattr(workflow, "patched", lambda patch_id: True)
    happy = [h for h in recorded("v1") if h.workflow_id == "v1/happy.order"]
    failures = await replay(happy)
    assert happy and set(failures) == {h.workflow_id for h in happy}
    assert all("nondetermin" in e.lower() for e in failures.values()), failures


async def _close(env, settings, order_id: str, ahead: timedelta = timedelta(0)) -> None:
    """Past the return window; ``ahead``: how much further its fulfillment's clock ran (its delivery starts the window)."""
    await env.fast_forward(env.client.get_workflow_handle(order_id),
                           settings.return_window + ahead + timedelta(days=1))


async def run_path(path: str, api: Api, env, settings, net: Optional[Net] = None, db=None) -> list[str]:
    """Drive one path to its end through the API; returns the workflow ids it ran (the order's first)."""
    net = net or await make_network(api)
    dc_n, dc_s = net.node("DC-N"), net.node("DC-S")
    key_n = await api.key("partner", node_id=dc_n)
    key_s = await api.key("partner", node_id=dc_s)
    special = SPECIAL.get(path)
    if special is not None:
        return await special(api, env, settings, net, db, key_n, key_s)
    oid = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
    if path == "cancel":
        await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "changed my mind"})
        await order_status(api, oid, "cancelled")
        return [oid]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, dc_n)
    fids = [f["fulfillment_id"]]
    if path == "reroute":
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/reject", key=key_n, json={"reason": "damaged"})
        f2 = await fulfillment(api, oid, dc_s)
        fids.append(f2["fulfillment_id"])
        await walk(api, f2, key_s)
    elif path == "short_pick":
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=key_n)
        picked = [{"line_id": l["line_id"], "qty": l["qty"] - (1 if l["line_id"] == "L1" else 0)} for l in f["lines"]]
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/pick", key=key_n, json={"lines": picked})
        f2 = await fulfillment(api, oid, dc_s)
        fids.append(f2["fulfillment_id"])
        for step in ("pack", "ship", "deliver"):
            await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=key_n)
        await walk(api, f2, key_s)
    else:
        await walk(api, f, key_n)
    await order_status(api, oid, "delivered")
    if path == "return":
        ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                           json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
        await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=key_n,
                     json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
        await order_status(api, oid, "partially_returned")
    await _close(env, settings, oid)
    return [oid, *fids]


async def _deliver_and_close(api: Api, env, settings, oid: str, fulfillments: list[tuple[dict, str]]) -> list[str]:
    for f, key in fulfillments:
        await walk(api, f, key)
    await order_status(api, oid, "delivered")
    await _close(env, settings, oid)
    return [oid, *(f["fulfillment_id"] for f, _ in fulfillments)]


async def _modify(api, env, settings, net, db, key_n, key_s):
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    lines = [{"line_id": "L1", "sku": net.skus[0], "qty": 2, "unit_price": "10.00",
              "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}},
             {"sku": net.skus[1], "qty": 1, "unit_price": "5.00",
              "delivery": {"method": "ship_express", "address": {"postal_code": net.postal_code}}}]
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": lines})
    await release(api, env, oid, settings)

    async def both():  # standard and express are two parcels: the read model may show one before the other
        o = await api.ok("GET", f"/orders/{oid}")
        return o["fulfillments"] if len(o["fulfillments"]) == 2 else None
    return await _deliver_and_close(api, env, settings, oid, [
        (f, key_n) for f in await eventually(both, what="both fulfillments released")])


async def _b2b_change(api, env, settings, net, db, key_n, key_s):
    wanted = datetime.now(timezone.utc).date() + timedelta(days=20)
    line = {"line_id": "L1", "sku": net.skus[0], "unit_price": "10.00",
            "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}
    oid = (await place(api, net, [("SKU1", 4)], requested_delivery_date=wanted.isoformat(),
                       customer={"id": "acme"}, key=await b2b_key(api, net)))["order_id"]
    await env.fast_forward(env.client.get_workflow_handle(oid), settings.remorse_window)
    await eventually(lambda: _has_event(api, oid, "released"), what="released")
    later = (wanted + timedelta(days=5)).isoformat()
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key,
                 json={"lines": [{**line, "qty": 6}], "requested_delivery_date": later})
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [{**line, "qty": 2}]})
    await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "project cancelled"})
    await order_status(api, oid, "cancelled")
    await env.client.get_workflow_handle(oid).result()
    return [oid]


async def _hold(api, env, settings, net, db, key_n, key_s):
    hold = await api.ok("POST", "/holds", key=net.client_key, expect=201, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code},
        "lines": [{"sku": net.skus[0], "qty": 2}]})
    oid = (await place(api, net, [("SKU1", 2)], hold_id=hold["hold_id"]))["order_id"]
    await release(api, env, oid, settings)
    return await _deliver_and_close(api, env, settings, oid, [(await fulfillment(api, oid, net.node("DC-N")), key_n)])


async def _digital(api, env, settings, net, db, key_n, key_s):
    gift = f"{net.prefix}-GIFT"
    await api.ok("PUT", f"/skus/{gift}", json={"name": "Gift card", "weight_kg": 0, "digital": True})
    oid = (await place(api, net, [("SKU1", 1), ("GIFT", 2)]))["order_id"]
    await release(api, env, oid, settings)
    return await _deliver_and_close(api, env, settings, oid, [(await fulfillment(api, oid, net.node("DC-N")), key_n)])


async def _backorder(api, env, settings, net, db, key_n, key_s):
    net2 = await make_network(api, stock={"DC-N": {"SKU1": 2}, "DC-S": {}})
    key = await api.key("partner", node_id=net2.node("DC-N"))
    node, sku = net2.node("DC-N"), net2.skus[0]
    oid = (await place(api, net2, [("SKU1", 5)]))["order_id"]
    await release(api, env, oid, settings)
    await order_status(api, oid, "backordered")
    eta = datetime.now(timezone.utc) + timedelta(days=10)
    await api.ok("POST", "/inventory/supply", json=[
        {"supply_id": f"{net2.prefix}-PO1", "node_id": node, "sku": sku, "qty": 10, "eta": eta.isoformat()}])
    await eventually(lambda: _has_event(api, oid, "supply_claimed"), what="supply claimed")
    await api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net2.prefix}-GR1", "node_id": node, "sku": sku, "delta": 10, "reason": "goods receipt"}])

    async def both():
        fs = (await api.ok("GET", f"/orders/{oid}"))["fulfillments"]
        return fs if len(fs) == 2 else None
    fs = await eventually(both, what="the backorder sourced")
    return await _deliver_and_close(api, env, settings, oid, [(f, key) for f in fs])


async def _at_risk(api, env, settings, net, db, key_n, key_s):
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, net.node("DC-N"))
    await walk(api, f, key_n, upto="pack")
    child = env.client.get_workflow_handle(f["fulfillment_id"])
    ship_by = datetime.fromisoformat(f["ship_by"])
    # Days ahead on a Friday evening (the next ship day is Monday's cutoff).
    ahead = ship_by - datetime.now(timezone.utc) + timedelta(minutes=5)
    await env.fast_forward(child, ahead)
    await eventually(lambda: _has_event(api, oid, "at_risk"), what="at risk")
    for step in ("ship", "deliver"):
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=key_n)
    await order_status(api, oid, "delivered")
    await _close(env, settings, oid, ahead)
    return [oid, f["fulfillment_id"]]


async def _reorchestrate(api, env, settings, net, db, key_n, key_s):
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    await release(api, env, oid, settings)
    f1 = await fulfillment(api, oid, net.node("DC-N"))
    await api.ok("POST", f"/orders/{oid}/reorchestrate", key=await api.key("support"),
                 json={"fulfillment_id": f1["fulfillment_id"], "to_node": net.node("DC-S"), "reason": "flooded"})
    await fulfillment(api, oid, net.node("DC-N"), status="cancelled")
    ids = await _deliver_and_close(api, env, settings, oid, [(await fulfillment(api, oid, net.node("DC-S")), key_s)])
    return [ids[0], f1["fulfillment_id"], *ids[1:]]


async def _accept_timeout(api, env, settings, net, db, key_n, key_s):
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    await release(api, env, oid, settings)
    f1 = await fulfillment(api, oid, net.node("DC-N"))
    await env.fast_forward(env.client.get_workflow_handle(f1["fulfillment_id"]),
                           settings.accept_timeout + timedelta(minutes=1))
    await fulfillment(api, oid, net.node("DC-N"), status="timed_out")
    ids = await _deliver_and_close(api, env, settings, oid, [(await fulfillment(api, oid, net.node("DC-S")), key_s)])
    return [ids[0], f1["fulfillment_id"], *ids[1:]]


async def _payment_decline(api, env, settings, net, db, key_n, key_s):
    body = order_body(net, [("SKU1", 1)])
    oid = order_id_for(net.channel, body["external_id"])
    await decline_authorization(db, f"{oid}:auth:1")
    placed = await api.ok("POST", "/orders", key=net.client_key, json=body, expect=201)
    assert placed["status"] == "cancelled", placed
    await env.client.get_workflow_handle(oid).result()
    return [oid]


async def decline_authorization(db, key: str) -> None:
    """The gateway's answer to this authorization, decided in advance (as a test card number does)."""
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO adapter_calls (system, idempotency_key, response, created_at) VALUES ('payments', :k,"
            " CAST(:r AS jsonb), now())"), {"k": f"authorization:{key}", "r": json.dumps({
                "status": "declined", "gateway_ref": "pay_declined", "amount": "0", "currency": "USD"})})


async def _has_event(api: Api, oid: str, event: str):
    return any(t["event"] == event for t in (await api.ok("GET", f"/orders/{oid}"))["timeline"]) or None


def _pickup_body(net: Net, lines, method: str) -> dict:
    body = order_body(net, lines)
    for l in body["lines"]:
        l["delivery"] = {"method": method, "pickup_node_id": net.node("STORE")}
    return body


async def _collect(api: Api, env, settings, db, net: Net, oid: str, f: dict, store_key: str) -> None:
    """Ready at the counter, the customer's code, collected: the pickup's end."""
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/ready", key=store_key)

    async def code():
        async with db.engine.connect() as conn:
            return (await conn.execute(text(
                "SELECT response->'detail'->>'pickup_code' FROM adapter_calls WHERE system = 'notifications'"
                " AND response->>'order_id' = :o AND response->>'event' = 'ready_for_pickup'"), {"o": oid})).scalar()
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/collect", key=store_key,
                 json={"pickup_code": await eventually(code, what="the pickup code")})
    await order_status(api, oid, "delivered")
    await _close(env, settings, oid)


async def _store_pickup(api, env, settings, net, db, key_n, key_s):
    """Curbside from the store's shelf: check-in, collected with the code."""
    store = net.node("STORE")
    await api.ok("PUT", f"/inventory/{store}", json={"as_of": "2026-01-01T00:00:00Z",
                                                      "items": [{"sku": f"{net.prefix}-SKU1", "on_hand": 5}]})
    await api.ok("PATCH", f"/nodes/{store}", json={"capabilities": ["ship", "pickup", "curbside"]})
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                        json=_pickup_body(net, [("SKU1", 2)], "curbside")))["order_id"]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, store)
    store_key = await api.key("partner", node_id=store)
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=store_key)
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/pick", key=store_key,
                 json={"lines": [{"line_id": "L1", "qty": 2}]})
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/arrived", key=net.client_key, json={"bay": "3"})
    await _collect(api, env, settings, db, net, oid, f, store_key)
    return [oid, f["fulfillment_id"]]


async def _transfer(api, env, settings, net, db, key_n, key_s):
    """Ship to store: the store has none, a DC sends them; received, then collected."""
    store = net.node("STORE")
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                        json=_pickup_body(net, [("SKU1", 1)], "pickup")))["order_id"]
    await release(api, env, oid, settings)
    leg = next(f for f in (await api.ok("GET", f"/orders/{oid}"))["fulfillments"] if f["kind"] == "transfer")
    sender = await api.key("partner", node_id=leg["node_id"])
    for step in ("accept", "pick", "pack", "ship"):
        await api.ok("POST", f"/fulfillments/{leg['fulfillment_id']}/{step}", key=sender,
                     json={"lines": [{"line_id": "L1", "qty": 1}]} if step == "pick" else None)
    store_key = await api.key("partner", node_id=store)
    await api.ok("POST", f"/fulfillments/{leg['fulfillment_id']}/receive", key=store_key)
    pickup = await fulfillment(api, oid, store, status="picked")
    await _collect(api, env, settings, db, net, oid, pickup, store_key)
    return [oid, leg["fulfillment_id"], pickup["fulfillment_id"]]


async def _exchange(api, env, settings, net, db, key_n, key_s):
    """An advance exchange: the replacement ships, the return closes it; both orders close."""
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, net.node("DC-N"))
    await walk(api, f, key_n)
    await order_status(api, oid, "delivered")
    x = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 1, "sku": f"{net.prefix}-SKU2", "unit_price": "11.00"}],
        "reason": "size", "advance": True})
    rid = x["replacement_order_id"]
    f2 = await fulfillment(api, rid, net.node("DC-N"))
    await walk(api, f2, key_n)
    await order_status(api, rid, "delivered")
    await api.ok("POST", f"/returns/{x['return_id']}/receive", key=key_n,
                 json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
    await order_status(api, oid, "returned")
    await _close(env, settings, oid)
    await _close(env, settings, rid)
    return [oid, f["fulfillment_id"], rid, f2["fulfillment_id"]]


async def _carrier_exception(api, env, settings, net, db, key_n, key_s):
    """The carrier loses the parcel: the order reships it at no charge; the reshipment is delivered."""
    oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, net.node("DC-N"))
    await walk(api, f, key_n, upto="ship")
    shipped = await fulfillment(api, oid, net.node("DC-N"), "shipped")
    carrier = await api.key("carrier", carrier=shipped["carrier"])
    await api.ok("POST", f"/carriers/{shipped['carrier']}/events", key=carrier, json=[{
        "tracking": shipped["tracking"], "event": "exception", "reason": "lost", "at": "2026-12-01T09:00:00Z"}])

    async def again():
        o = await api.ok("GET", f"/orders/{oid}")
        return next((x for x in o["fulfillments"] if x["status"] == "released"), None)
    f2 = await eventually(again, what="the reshipment")
    await walk(api, f2, key_n if f2["node_id"] == net.node("DC-N") else key_s)
    await order_status(api, oid, "delivered")
    await _close(env, settings, oid)
    return [oid, f["fulfillment_id"], f2["fulfillment_id"]]


SPECIAL = {"modify": _modify, "b2b_change": _b2b_change, "hold": _hold, "digital": _digital, "backorder": _backorder,
           "at_risk": _at_risk, "reorchestrate": _reorchestrate, "accept_timeout": _accept_timeout,
           "payment_decline": _payment_decline, "pickup": _store_pickup, "transfer": _transfer,
           "exchange": _exchange, "carrier_exception": _carrier_exception}


async def test_every_path_replays_and_is_recorded(api: Api, temporal_env, settings, db):
    # "1": every path; or the paths to record, comma-separated (a new path, leaving the others as recorded).
    wanted = os.environ.get("NODAL_RECORD_HISTORIES", "")
    histories = []
    # Each path on a network of its own: they run side by side.
    ran = await asyncio.gather(*(run_path(path, api, temporal_env, settings, db=db) for path in PATHS))
    for path, ids in zip(PATHS, ran):
        for i, wid in enumerate(ids):
            handle = temporal_env.client.get_workflow_handle(wid)
            await handle.result()  # every path ends
            history = await handle.fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
            name = f"v2/{path}.{'order' if i == 0 else f'{started.lower()}{i}'}"
            histories.append(WorkflowHistory(name, history.events))
            assert started in (("Order",) if i == 0 else ("Fulfillment", "Pickup", "Transfer", "Order")), (name, started)
            remote = {e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                      if e.HasField("activity_task_scheduled_event_attributes")}
            assert not remote & LOCAL, f"{name} scheduled {sorted(remote & LOCAL)} through the server"
            if wanted == "1" or path in wanted.split(","):
                # Kept in the repository and replayed in CI without this database: every payload inline.
                assert self_contained(histories[-1]), f"{name} keeps payloads in PostgreSQL: not recorded"
                (HISTORIES / "v2").mkdir(exist_ok=True)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
    failures = await replay(histories, db.engine)  # fresh ones may keep large payloads in this database
    assert not failures, failures
