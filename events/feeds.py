"""Channel stock feeds: ``availability.changed`` per channel and SKU when the channel's available-to-sell crosses
one of the channel's thresholds or moves by its step, so a marketplace sees stock fall before it can oversell.

A trigger on inventory_positions marks each SKU whose stock changed (stock_changes), in the transaction of the
change, while any channel has a feed. The watcher (the ChannelFeeds workflow's long-running activity) wakes on the
trigger's notification, lets a burst settle for ``debounce``, then in ONE transaction takes the marks, works out
each feed channel's available-to-sell of those SKUs (the channel's view: its node types, excluded nodes, buffer;
stock protected for tiers held back, as GET /availability shows a customer of no tier), writes the events that
are due and what it published (channel_availability). A crash before the commit leaves the marks in place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events import outbox
from events.catalogue import NewEvent
from events.listen import listen
from inventory.arithmetic import channel_ats_sql, protected_for_others_sql
from nodal.logging import get_logger

STOCK_CHANNEL = "nodal_stock"
DEFAULT_THRESHOLDS = [0]  # in stock or not
POLL_EVERY = 5.0
PURGE_EVERY = 600.0
_SINGLE_WRITER = 7_100_201  # advisory lock key: one publisher at a time, whatever runs


@dataclass
class Feed:
    """A channel's feed settings (channel_views.feed) and its view of the pool."""

    channel: str
    thresholds: list[int] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    step: Optional[int] = None
    node_types: list[str] = field(default_factory=list)
    exclude_nodes: list[str] = field(default_factory=list)
    buffer_units: int = 0
    buffer_pct: float = 0.0

    def band(self, available: int) -> int:
        return sum(1 for t in self.thresholds if available > t)

    def due(self, previous: Optional[int], available: int) -> bool:
        """Publish? The first figure, a threshold crossed, or a move of at least the step."""
        if previous is None:
            return True
        if previous == available:
            return False
        if self.band(previous) != self.band(available):
            return True
        return bool(self.step) and abs(available - previous) >= (self.step or 0)


# The channel's available-to-sell of each SKU over the nodes its view sells from (no destination: nationally).
CHANNEL_ATS = text(f"""
SELECT w.sku, COALESCE(SUM({channel_ats_sql(protected=protected_for_others_sql("p.node_id", "p.sku", "CAST(NULL AS varchar)"))}), 0) AS available
FROM unnest(CAST(:skus AS varchar[])) AS w(sku)
LEFT JOIN inventory_positions p ON p.sku = w.sku AND EXISTS (
  SELECT 1 FROM nodes n WHERE n.node_id = p.node_id AND n.enabled
    AND (cardinality(CAST(:types AS varchar[])) = 0 OR n.type = ANY(CAST(:types AS varchar[])))
    AND NOT (n.node_id = ANY(CAST(:excluded AS varchar[]))))
GROUP BY w.sku ORDER BY w.sku
""")
_FEEDS = text("SELECT channel, node_types, exclude_nodes, buffer_units, buffer_pct, feed FROM channel_views"
              " WHERE feed IS NOT NULL ORDER BY channel")
_TAKE = text("DELETE FROM stock_changes RETURNING sku")
_PUBLISHED = text("SELECT sku, available, version FROM channel_availability WHERE channel = :c AND sku = ANY(:skus)")
_KEEP = text("""
INSERT INTO channel_availability (channel, sku, available, version, seq, updated_at)
SELECT :c, u.sku, u.available, u.version, e.seq, now()
FROM unnest(CAST(:sku AS varchar[]), CAST(:available AS integer[]), CAST(:version AS integer[]),
            CAST(:event_id AS varchar[])) AS u(sku, available, version, event_id)
JOIN events e ON e.id = u.event_id
ON CONFLICT (channel, sku) DO UPDATE SET available = EXCLUDED.available, version = EXCLUDED.version,
  seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at
""")


def feed_of(row) -> Feed:
    cfg = row.feed or {}
    return Feed(channel=row.channel, thresholds=sorted(cfg.get("thresholds") or DEFAULT_THRESHOLDS),
                step=cfg.get("step"), node_types=list(row.node_types or []),
                exclude_nodes=list(row.exclude_nodes or []), buffer_units=row.buffer_units, buffer_pct=row.buffer_pct)


async def channel_available(conn: AsyncConnection, feed: Feed, skus: list[str]) -> dict[str, int]:
    rows = await conn.execute(CHANNEL_ATS, {"skus": skus, "types": feed.node_types, "excluded": feed.exclude_nodes,
                                            "buffer_units": feed.buffer_units, "buffer_pct": feed.buffer_pct})
    return {r.sku: int(r.available) for r in rows}


async def publish(conn: AsyncConnection, now: Optional[datetime] = None) -> int:
    """Take the SKUs marked since the last run and publish each feed's changes (the caller's transaction)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SINGLE_WRITER})
    skus = sorted({r.sku for r in await conn.execute(_TAKE)})
    if not skus:
        return 0
    now = now or datetime.now(timezone.utc)
    published = 0
    for row in (await conn.execute(_FEEDS)).all():
        feed = feed_of(row)
        available = await channel_available(conn, feed, skus)
        before = {r.sku: r for r in await conn.execute(_PUBLISHED, {"c": feed.channel, "skus": skus})}
        events: list[NewEvent] = []
        keep: dict[str, list] = {"sku": [], "available": [], "version": [], "event_id": []}
        for sku, units in available.items():
            prev = before.get(sku)
            if not feed.due(prev.available if prev else None, units):
                continue
            version = (prev.version if prev else 0) + 1
            event_id = f"availability.{feed.channel}.{sku}.{version}"
            events.append(NewEvent(id=event_id, type="availability.changed", stream=f"availability:{feed.channel}:{sku}",
                                   at=now, channel=feed.channel, data={
                                       "channel": feed.channel, "sku": sku, "available": units,
                                       "previous": prev.available if prev else None,
                                       "thresholds": feed.thresholds}))
            for k, v in (("sku", sku), ("available", units), ("version", version), ("event_id", event_id)):
                keep[k].append(v)
        if events:
            await outbox.write(conn, events)
            await conn.execute(_KEEP, {"c": feed.channel, **keep})
            published += len(events)
    return published


class FeedWatcher:
    def __init__(self, engine: AsyncEngine, database_url: str, debounce: float = 1.0,
                 retention: timedelta = timedelta(days=7), heartbeat: Callable[[], None] = lambda: None):
        self.engine, self.database_url, self.debounce, self.retention = engine, database_url, debounce, retention
        self.heartbeat = heartbeat
        self.woken = asyncio.Event()
        self.log = get_logger()

    async def run(self, run_for: float) -> None:
        loop = asyncio.get_running_loop()
        end, purge_at = loop.time() + run_for, loop.time()
        listener = asyncio.create_task(listen(self.database_url, STOCK_CHANNEL, self.woken))
        try:
            while loop.time() < end:
                self.heartbeat()
                if loop.time() >= purge_at:
                    await self._purge()
                    purge_at = loop.time() + PURGE_EVERY
                try:
                    await asyncio.wait_for(self.woken.wait(), timeout=POLL_EVERY)
                    await asyncio.sleep(self.debounce)  # a burst of changes settles into one look
                except asyncio.TimeoutError:
                    pass
                self.woken.clear()
                async with self.engine.begin() as conn:
                    n = await publish(conn)
                if n:
                    self.log.info("feeds.published", events=n)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _purge(self) -> None:
        """Events past their retention go (a pending delivery is failed long before: retry_for is shorter)."""
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at <"
                                    " now() - CAST(:keep AS interval) ORDER BY seq LIMIT 20000)"),
                               {"keep": self.retention})
