"""Channel stock feeds: a marketplace hears its available-to-sell of a SKU fall under its threshold (availability.changed,
signed, in order) as orders take the stock, not each unit; it can read the whole feed and follow its changes."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from standardwebhooks import Webhook

from tests.integration.conftest import Api, eventually, make_network
from tests.integration.flow import place
from tests.integration.receiver import serving, until

pytestmark = pytest.mark.integration


def changes(receiver, sku: str) -> list[dict]:
    out = []
    for r in receiver.got:
        body = json.loads(r.body)
        if body["type"] == "availability.changed" and body["data"]["sku"] == sku:
            out.append(body["data"])
    return out


async def test_a_marketplace_sees_stock_fall_under_its_threshold(api: Api, temporal_env, settings, db):
    net = await make_network(api, stock={"DC-N": {"SKU1": 10, "SKU2": 10}, "DC-S": {"SKU1": 10}})
    market = f"{net.prefix}-marketplace"
    sku = net.skus[0]
    client = await api.key("client", channel=market)
    async with serving() as receiver:
        hook = await api.ok("PUT", f"/webhooks/feed-{uuid.uuid4().hex[:8]}", expect=201, json={
            "url": receiver.url, "events": ["availability.changed"], "channel": market})
        # Each position keeps 2 units back for the other channels: 8 + 8 of SKU1 are the marketplace's to sell.
        view = await api.ok("PUT", f"/channels/{market}", json={
            "buffer_units": 2, "feed": {"thresholds": [0, 5], "step": 10}})
        assert view["feed"] == {"thresholds": [0, 5], "step": 10}
        try:
            await until(lambda: [c["available"] for c in changes(receiver, sku)] == [16], 30, "the first figure")
            start = (await api.ok("GET", f"/channels/{market}/feed?since=0&limit=5000", key=client))["since"]

            # Orders on the web channel take 4 at a time: 16 → 12 → 8 (within the band, under the step: quiet),
            # then 4, under the threshold of 5: the marketplace hears of it.
            for _ in range(3):
                await place(api, net, [("SKU1", 4)])
            await until(lambda: [c["available"] for c in changes(receiver, sku)] == [16, 4], 30, "the fall under 5")
            fell = changes(receiver, sku)[-1]
            assert fell == {"channel": market, "sku": sku, "available": 4, "previous": 16, "thresholds": [0, 5]}

            # A burst of stock changes settles into one look: ten adjustments of one unit, one event (4 → 14).
            await api.ok("POST", "/inventory/adjustments", json=[
                {"event_id": uuid.uuid4().hex, "node_id": net.node("DC-S"), "sku": sku, "delta": 1, "reason": "found"}
                for _ in range(10)])
            await until(lambda: len(changes(receiver, sku)) == 3, 30, "the burst published")
            assert changes(receiver, sku)[-1]["available"] == 14

            # The feed: changes since the reader's mark, and a snapshot by pages with the live figures.
            since = await api.ok("GET", f"/channels/{market}/feed?since={start}", key=client)
            assert [(i["sku"], i["available"]) for i in since["items"]] == [(sku, 4), (sku, 14)][-len(since["items"]):]
            assert since["items"][-1]["available"] == 14 and since["since"] > start
            page = await api.ok("GET", f"/channels/{market}/feed?limit=2", key=client)
            assert page["next_cursor"] is not None and len(page["items"]) == 2
            items = {}
            cursor = None
            while True:
                got = await api.ok("GET", f"/channels/{market}/feed?limit=500" + (f"&cursor={cursor}" if cursor else ""),
                                   key=client)
                items.update({i["sku"]: i["available"] for i in got["items"]})
                cursor = got["next_cursor"]
                if cursor is None:
                    break
            assert items[sku] == 14 and items[net.skus[1]] == 8 and items[net.skus[2]] == 0
            other = await api.key("client", channel=net.channel)
            assert (await api.call("GET", f"/channels/{market}/feed", key=other)).status_code == 403
        finally:
            await api.ok("PUT", f"/channels/{market}", json={"buffer_units": 2})  # the feed off: nothing more marked
            await api.ok("DELETE", f"/webhooks/{hook['name']}")
    verifier = Webhook(hook["secret"])
    assert all(verifier.verify(r.body, r.headers) for r in receiver.got)
    async with db.engine.connect() as conn:
        marks = (await conn.execute(text("SELECT COUNT(*) FROM stock_changes"))).scalar()
    assert marks == 0 or await eventually(lambda: _no_marks(db), what="the marks taken")


async def _no_marks(db) -> bool:
    async with db.engine.connect() as conn:
        return (await conn.execute(text("SELECT COUNT(*) FROM stock_changes"))).scalar() == 0


async def test_events_past_their_retention_are_dropped(db):
    """The feeds' process keeps the outbox to NODAL_EVENT_RETENTION (what replay reaches): older events go."""
    from datetime import timedelta

    from events.feeds import FeedWatcher

    old, fresh = f"old-{uuid.uuid4().hex[:8]}", f"fresh-{uuid.uuid4().hex[:8]}"
    async with db.engine.begin() as conn:
        for eid, age in ((old, "8 days"), (fresh, "6 days")):
            await conn.execute(text(
                "INSERT INTO events (id, type, stream, at, data, created_at) VALUES (:i, 'order.received', :i, now(),"
                " '{}', now() - CAST(:a AS interval))"), {"i": eid, "a": age})
    await FeedWatcher(db.engine, db.url, retention=timedelta(days=7))._purge()
    async with db.engine.connect() as conn:
        left = {r[0] for r in await conn.execute(text("SELECT id FROM events WHERE id = ANY(:i)"), {"i": [old, fresh]})}
    assert left == {fresh}
