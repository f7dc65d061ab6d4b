"""Outbound events: every event of an order's life reaches a local receiver signed (verified with the
standardwebhooks package), in order per order; retries after 500s and timeouts deliver each event once after dedupe
by webhook-id; a dead endpoint slows neither the orders nor the other subscribers; scopes, replay, rotation."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from standardwebhooks import Webhook

from api.event_docs import ENVELOPES
from tests.integration.conftest import Api, eventually, make_network, own_stack
from tests.integration.flow import fulfillment, order_status, place, release, walk
from tests.integration.receiver import serving, until

pytestmark = pytest.mark.integration

# An order's life in events: the order's and its fulfillment's own steps each in this order, and the order hears of
# a shipment or delivery after the fulfillment (the two run side by side: a fulfillment may be delivered before
# its order has written "shipped").
ORDER_LIFE = ["order.received", "order.promised", "order.released", "order.shipped", "order.delivered",
              "return.requested", "return.received", "order.refunded", "order.returned"]
FULFILLMENT_LIFE = ["fulfillment.released", "fulfillment.accepted", "fulfillment.picked", "fulfillment.packed",
                    "fulfillment.shipped", "fulfillment.delivered"]
AFTER = [("fulfillment.shipped", "order.shipped"), ("fulfillment.delivered", "order.delivered")]


async def subscribe(api: Api, url: str, events: list[str], key=None, **scope) -> dict:
    name = "t-" + uuid.uuid4().hex[:10]
    kw = {"key": key} if key else {}
    return await api.ok("PUT", f"/webhooks/{name}", json={"url": url, "events": events, **scope}, expect=201, **kw)


async def written(db, order_id: str) -> list[tuple[str, str]]:
    """The order's events as the outbox holds them, in their order: (id, type)."""
    async with db.engine.connect() as conn:
        return [(r.id, r.type) for r in await conn.execute(text(
            "SELECT id, type FROM events WHERE order_id = :o ORDER BY seq"), {"o": order_id})]


async def full_life(api: Api, temporal_env, settings, net) -> str:
    oid = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
    await release(api, temporal_env, oid, settings)
    dc = net.node("DC-N")
    f = await fulfillment(api, oid, dc)
    partner = await api.key("partner", node_id=dc)
    await walk(api, f, partner)
    await order_status(api, oid, "delivered")
    ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
    await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner,
                 json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
    await order_status(api, oid, "partially_returned")
    return oid


async def test_every_event_of_an_order_arrives_signed_and_in_order(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    async with serving() as receiver:
        hook = await subscribe(api, receiver.url, ["*"], channel=net.channel)
        assert hook["secret"].startswith("whsec_") and hook["created"] is True
        oid = await full_life(api, temporal_env, settings, net)
        outbox = await written(db, oid)
        types = [t for _, t in outbox]
        for life in (ORDER_LIFE, FULFILLMENT_LIFE):
            assert [t for t in types if t in life] == life, types
        assert all(types.index(first) < types.index(then) for first, then in AFTER), types
        await until(lambda: len(receiver.unique()) >= len(outbox), 30, "every event delivered")
        await api.ok("DELETE", f"/webhooks/{hook['name']}")

    verifier = Webhook(hook["secret"])
    got = [r for r in receiver.got]
    bodies = [verifier.verify(r.body, r.headers) for r in got]  # raises on a bad signature
    for b in bodies:  # each as the OpenAPI's webhooks document it
        ENVELOPES[b["type"]].model_validate(b)
    assert [(r.id, b["type"]) for r, b in zip(got, bodies)] == outbox  # in order, each once (nothing failed)
    assert all(b["data"]["order_id"] == oid and b["data"]["channel"] == net.channel for b in bodies)
    shipped = next(b for b in bodies if b["type"] == "fulfillment.shipped")
    assert shipped["data"]["tracking"] and shipped["data"]["node_id"] == net.node("DC-N")
    assert all(b["timestamp"].endswith("Z") and datetime.fromisoformat(b["timestamp"]) for b in bodies)
    with pytest.raises(Exception):  # another secret does not verify
        Webhook("whsec_" + "A" * 32).verify(got[0].body, got[0].headers)
    # No personal data leaves in an event: the receiver reads the order for that.
    assert not any("jane.doe@example.com" in r.body.decode() or "1 Main St" in r.body.decode() for r in got)


async def test_500_then_timeout_then_200_is_each_event_once_after_dedupe(temporal_env, db, pg_url):
    def flaky(_id: str, n: int) -> tuple[int, float]:
        return {1: (500, 0.0), 2: (200, 1.0)}.get(n, (200, 0.0))  # the 2nd answers after the sender gave up

    async with own_stack(temporal_env, db, pg_url, "nodal-webhook-flaky", webhook_timeout=timedelta(seconds=0.3),
                         webhook_backoff=timedelta(seconds=0.1)) as api, serving(flaky) as receiver:
        net = await make_network(api)
        hook = await subscribe(api, receiver.url, ["order.*"], channel=net.channel)
        oid, f = None, None
        oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
        await release(api, temporal_env, oid, api.settings)
        f = await fulfillment(api, oid, net.node("DC-N"))
        await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
        await order_status(api, oid, "delivered")
        want = [i for i, t in await written(db, oid) if t.startswith("order.")]

        async def all_delivered() -> bool:
            listed = await api.ok("GET", f"/webhooks/{hook['name']}/deliveries?status=delivered&limit=1000")
            return {d["event_id"] for d in listed["deliveries"]} >= set(want)
        await until(all_delivered, 60, "every event through the failures")
        rows = await api.ok("GET", f"/webhooks/{hook['name']}/deliveries?status=delivered&limit=1000")
        await api.ok("DELETE", f"/webhooks/{hook['name']}")
    unique = receiver.unique()
    assert list(unique) == want  # deduped by webhook-id: each event once, in order
    assert all(receiver.seen[i] >= 3 for i in want), receiver.seen  # each went through a 500 and a timeout first
    verifier = Webhook(hook["secret"])
    assert all(verifier.verify(r.body, r.headers)["type"] for r in receiver.got if r.id in want)
    attempts = {d["event_id"]: d["attempts"] for d in rows["deliveries"]}
    assert all(attempts[i] >= 3 for i in want), attempts


async def lifecycle(api: Api, temporal_env, net, partner: str, n: int) -> tuple[list[str], float]:
    """n orders placed, released together, walked to delivered: their ids and the seconds it took."""
    started = time.monotonic()
    orders = [(await place(api, net, [("SKU1", 1)]))["order_id"] for _ in range(n)]
    await asyncio.gather(*(release(api, temporal_env, oid, api.settings) for oid in orders))
    for oid in orders:
        await walk(api, await fulfillment(api, oid, net.node("DC-N")), partner)
    for oid in orders:
        await order_status(api, oid, "delivered")
    return orders, time.monotonic() - started


async def test_a_dead_endpoint_slows_neither_orders_nor_other_subscribers(temporal_env, db, pg_url):
    """One subscriber never answers (every POST waits the whole timeout), another is fast: the fast one hears of
    everything at once and the orders go on; the dead one's deliveries only pile up. Measured against the same
    orders with the fast subscriber alone."""
    def dead(_id: str, _n: int) -> tuple[int, float]:
        return 200, 30.0

    async with own_stack(temporal_env, db, pg_url, "nodal-webhook-dead", webhook_timeout=timedelta(seconds=3),
                         webhook_concurrency=4, remorse_window=timedelta(seconds=2)) as api, \
            serving(dead) as sink, serving() as fast:
        net = await make_network(api, stock={"DC-N": {"SKU1": 100}})
        partner = await api.key("partner", node_id=net.node("DC-N"))
        quick = await subscribe(api, fast.url, ["*"], channel=net.channel)
        _, alone = await lifecycle(api, temporal_env, net, partner, 4)
        slow = await subscribe(api, sink.url, ["*"], channel=net.channel)
        orders, beside = await lifecycle(api, temporal_env, net, partner, 4)
        ids = [i for oid in orders for i, _ in await written(db, oid)]
        await until(lambda: set(fast.unique()) >= set(ids), 20, "the fast subscriber has every event")
        async with db.engine.connect() as conn:
            lag = (await conn.execute(text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM d.delivered_at - e.created_at)),"
                " MAX(EXTRACT(EPOCH FROM d.delivered_at - e.created_at)) FROM webhook_deliveries d"
                " JOIN events e ON e.seq = d.event_seq WHERE d.webhook = :w AND e.order_id = ANY(:o)"),
                {"w": quick["name"], "o": orders})).one()
            stuck = (await conn.execute(text(
                "SELECT COUNT(*) FILTER (WHERE status = 'pending'), COUNT(*) FILTER (WHERE status = 'delivered')"
                " FROM webhook_deliveries WHERE webhook = :w"), {"w": slow["name"]})).one()
        await until(lambda: _failed_attempt(db, slow["name"]), 20, "the dead endpoint's first timeouts")
        scrape = (await api.call("GET", "/metrics", key=None)).text
        for h in (slow, quick):
            await api.ok("DELETE", f"/webhooks/{h['name']}")
    # Delivery latency and failures per subscription in /metrics.
    assert f'nodal_webhook_pending{{webhook="{slow["name"]}"}}' in scrape
    assert f'nodal_webhook_deliveries_total{{outcome="delivered",webhook="{quick["name"]}"}}' in scrape
    assert f'nodal_webhook_delivery_latency_seconds{{quantile="0.99",webhook="{quick["name"]}"}}' in scrape
    failed = float(scrape.split(f'nodal_webhook_failed_attempts_total{{webhook="{slow["name"]}"}} ')[1].split()[0])
    assert failed >= 1
    print(f"\n4 orders placed→delivered: {alone:.1f} s with one live subscriber, {beside:.1f} s beside a dead one too; "
          f"the live subscriber's delivery latency meanwhile p50 {lag[0] * 1000:.0f} ms, max {lag[1] * 1000:.0f} ms; "
          f"the dead one: {stuck[0]} pending, {stuck[1]} delivered")
    assert stuck[1] == 0 and stuck[0] > 0  # the dead endpoint got nothing through
    # The live subscriber never waited on the dead one: each event within less than one of its timeouts.
    assert lag[1] < 3.0


async def _failed_attempt(db, name: str) -> bool:
    async with db.engine.connect() as conn:
        return bool((await conn.execute(text("SELECT failed_attempts FROM webhooks WHERE name = :n"),
                                        {"n": name})).scalar())


async def test_scopes_validation_rotation_and_replay(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    dc = net.node("DC-N")
    partner = await api.key("partner", node_id=dc)
    async with serving() as receiver:
        # Bad input changes nothing.
        for body, why in (({"url": "ftp://example.com/x", "events": ["*"]}, "http"), ({"url": receiver.url, "events": ["order.nope"]},
                                                                           "unknown"),
                          ({"url": receiver.url, "events": []}, "")):
            r = await api.call("PUT", "/webhooks/bad-one", json=body)
            assert r.status_code == 422 and why in r.text, r.text
        assert (await api.call("GET", "/webhooks/bad-one/deliveries")).status_code == 404
        # A partner hears only its node's fulfillments; a client only its channel's.
        r = await api.call("PUT", "/webhooks/p-orders", key=partner, json={"url": receiver.url, "events": ["order.*"]})
        assert r.status_code == 403
        r = await api.call("PUT", "/webhooks/p-private", key=partner, json={"url": receiver.url,
                                                                            "events": ["fulfillment.*"]})
        assert r.status_code == 422 and "private" in r.text  # 127.0.0.1: only an admin may point inside
        mine = await subscribe(api, receiver.url, ["fulfillment.*"], key=None, node_id=dc)
        assert mine["node_id"] == dc
        theirs = await subscribe(api, receiver.url, ["order.*"], channel=net.channel)
        other = await api.key("client", channel=f"{net.prefix}-other")
        r = await api.call("DELETE", f"/webhooks/{theirs['name']}", key=other)
        assert r.status_code == 403
        listed = await api.ok("GET", "/webhooks", key=partner)
        assert [h["name"] for h in listed["webhooks"]] == [mine["name"]]

        oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
        await release(api, temporal_env, oid, settings)
        f = await fulfillment(api, oid, dc)
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=partner)
        ids = await written(db, oid)
        await until(lambda: {i for i, _ in ids} <= set(receiver.unique()), 20, "both subscriptions served")
        by_hook: dict[str, list[str]] = {}
        for r in receiver.got:
            by_hook.setdefault(json.loads(r.body)["type"].split(".")[0], []).append(r.id)
        assert set(by_hook) == {"order", "fulfillment"}

        # Rotation: both secrets sign during the overlap; the old one alone verifies, and so does the new one.
        rotated = await api.ok("POST", f"/webhooks/{mine['name']}/rotate-secret", json={"overlap": "1h"})
        assert rotated["secret"] != mine["secret"]
        n = len(receiver.got)
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/pick", key=partner,
                     json={"lines": [{"line_id": "L1", "qty": 1}]})
        await until(lambda: any(json.loads(r.body)["type"] == "fulfillment.picked" for r in receiver.got[n:]), 20,
                    "picked delivered after the rotation")
        picked = next(r for r in receiver.got[n:] if json.loads(r.body)["type"] == "fulfillment.picked")
        assert len(picked.headers["webhook-signature"].split(" ")) == 2
        Webhook(mine["secret"]).verify(picked.body, picked.headers)
        Webhook(rotated["secret"]).verify(picked.body, picked.headers)

        # Replay: everything since the order began goes out again, with the same webhook-ids.
        before = len(receiver.got)
        since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
        replayed = await api.ok("POST", f"/webhooks/{mine['name']}/replay",
                                json={"since": since, "include_delivered": True})
        assert replayed["requeued"] >= 3
        await until(lambda: len(receiver.got) - before >= replayed["requeued"], 20, "the replay")
        assert {r.id for r in receiver.got[before:]} <= {r.id for r in receiver.got[:before]}
        for h in (mine, theirs):
            await api.ok("DELETE", f"/webhooks/{h['name']}")
        assert (await api.call("GET", f"/webhooks/{mine['name']}/deliveries")).status_code == 404


async def test_deliveries_given_up_are_listed_as_failed_and_replayed(temporal_env, db, pg_url):
    """Past NODAL_WEBHOOK_RETRY_FOR a delivery is failed (listed, counted) and its order's next event goes; once the
    endpoint is mended, a replay sends the failed ones again (same webhook-ids)."""
    mended = False

    def broken(_id: str, _n: int) -> tuple[int, float]:
        return (200, 0.0) if mended else (503, 0.0)

    async with own_stack(temporal_env, db, pg_url, "nodal-webhook-failed", webhook_retry_for=timedelta(seconds=1),
                         webhook_backoff=timedelta(seconds=0.2)) as api, serving(broken) as receiver:
        net = await make_network(api)
        hook = await subscribe(api, receiver.url, ["order.*"], channel=net.channel)
        oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
        want = [i for i, t in await written(db, oid) if t.startswith("order.")]
        assert len(want) == 2  # received, promised

        async def failed() -> list:
            got = await api.ok("GET", f"/webhooks/{hook['name']}/deliveries?status=failed")
            return got["deliveries"] if len(got["deliveries"]) == len(want) else []
        given_up = await eventually(failed, timeout=30, what="the deliveries given up")
        # Retried until the window closed (the second waited for the first, then had little of its window left).
        assert all(d["last_status_code"] == 503 and d["last_error"] == "HTTP 503" for d in given_up)
        assert sum(d["attempts"] for d in given_up) >= 3
        listed = next(h for h in (await api.ok("GET", "/webhooks"))["webhooks"] if h["name"] == hook["name"])
        assert listed["failed"] == len(want) and listed["pending"] == 0
        mended = True
        replayed = await api.ok("POST", f"/webhooks/{hook['name']}/replay",
                                json={"since": (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()})
        assert replayed["requeued"] == len(want)

        async def delivered() -> bool:
            got = await api.ok("GET", f"/webhooks/{hook['name']}/deliveries?status=delivered")
            return len(got["deliveries"]) == len(want)
        await eventually(delivered, timeout=30, what="the replay delivered")
        await api.ok("DELETE", f"/webhooks/{hook['name']}")
    ok = [r.id for r in receiver.got if r.id in want]
    assert ok[-len(want):] == want  # the replay in order, under the same ids


async def test_a_new_subscriptions_process_waits_for_its_commit(db, monkeypatch):
    """PUT /webhooks starts the delivery process before it commits the subscription. Under load the process can
    read before the commit: it must wait for the row, not end as if the subscription were deleted (which left a new
    subscription with no process: nothing was ever delivered to it)."""
    from events import delivery

    name = f"t-new-{uuid.uuid4().hex[:8]}"
    running = asyncio.create_task(delivery.Dispatcher(db.url, name, "g1", delivery.Policy(timeout=1)).run(2.0))
    await asyncio.sleep(0.5)
    assert not running.done(), "the process ended before its subscription was committed"
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO webhooks (name, generation, url, events, secret, owner_key_id, created_at, updated_at)"
            " VALUES (:n, 'g1', 'http://127.0.0.1:9/hook', ARRAY['*'], :s, 'test', now(), now())"),
            {"n": name, "s": "whsec_" + "A" * 32})
    assert await asyncio.wait_for(running, 30) is delivery.DONE
    # A subscription that never comes (its transaction failed) ends its process once the grace is over; one
    # deleted later ends it at the next look (the process has seen it).
    monkeypatch.setattr(delivery, "NEW_GRACE", 0.3)
    assert await asyncio.wait_for(delivery.Dispatcher(db.url, f"{name}-never", "g1", delivery.Policy()).run(60), 10) \
        is delivery.GONE
    later = asyncio.create_task(delivery.Dispatcher(db.url, name, "g1", delivery.Policy()).run(60))
    await asyncio.sleep(0.5)
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM webhooks WHERE name = :n"), {"n": name})
    assert await asyncio.wait_for(later, 30) is delivery.GONE
