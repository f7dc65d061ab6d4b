"""The outbox: events written in the caller's transaction, each with a delivery per matching subscription.

Events of one stream (an order) are written under that stream's transaction-level advisory lock, so their
sequence numbers follow their commit order: a delivery process that sends each stream's lowest pending sequence
first never lets a later event overtake an earlier one. Written once per id (a retried write adds nothing).
Subscriptions hear of new deliveries by a notification at commit, each on a channel of its own (deliveries_channel).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events.catalogue import MATCH_SQL, NewEvent

CHANGED = "changed"  # the payload that tells a subscription's delivery process its settings changed
_CHANNEL_SQL = "'nodal_d_' || left(md5({}), 16)"


def deliveries_channel(name: str) -> str:
    """The notification channel of one subscription's delivery process (the same as _CHANNEL_SQL makes)."""
    return "nodal_d_" + hashlib.md5(name.encode()).hexdigest()[:16]

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(s, 7)) FROM unnest(CAST(:streams AS varchar[])) AS s"
             " ORDER BY s")

# An order's events carry its external id and channel (from the read model's row, in the same transaction).
_WRITE = text(f"""
WITH ev AS (
  INSERT INTO events (id, type, stream, order_id, channel, node_id, at, data)
  SELECT e.id, e.type, e.stream, e.order_id, COALESCE(e.channel, o.channel), e.node_id, e.at,
         CASE WHEN e.order_id IS NULL THEN e.data
              ELSE jsonb_build_object('order_id', e.order_id, 'external_id', o.external_id, 'channel', o.channel)
                   || e.data END
  FROM unnest(CAST(:id AS varchar[]), CAST(:type AS varchar[]), CAST(:stream AS varchar[]),
              CAST(:order_id AS varchar[]), CAST(:channel AS varchar[]), CAST(:node_id AS varchar[]),
              CAST(:at AS timestamptz[]), CAST(:data AS jsonb[]))
       WITH ORDINALITY AS e(id, type, stream, order_id, channel, node_id, at, data, n)
  LEFT JOIN orders o ON o.order_id = e.order_id
  ORDER BY e.n
  ON CONFLICT (id) DO NOTHING
  RETURNING seq, id, type, stream, channel, node_id
), d AS (
  INSERT INTO webhook_deliveries (webhook, event_seq, stream, status, attempts, next_attempt_at, created_at)
  SELECT w.name, ev.seq, ev.stream, 'pending', 0, now(), now() FROM ev JOIN webhooks w ON {MATCH_SQL}
  ON CONFLICT (webhook, event_seq) DO NOTHING
  RETURNING webhook
), n AS (
  SELECT count(*) AS told FROM (SELECT pg_notify({_CHANNEL_SQL.format("webhook")}, '')
                                FROM (SELECT DISTINCT webhook FROM d) x) y
)
SELECT ev.id, ev.channel, n.told FROM ev, n
""")


async def write(conn: AsyncConnection, events: Iterable[NewEvent]) -> list[NewEvent]:
    """Write these events (and their deliveries) in the caller's transaction; returns those that were new (a retried
    write finds its events there already)."""
    batch = list(events)
    if not batch:
        return []
    await conn.execute(_LOCK, {"streams": sorted({e.stream for e in batch})})
    rows = await conn.execute(_WRITE, {
        "id": [e.id for e in batch], "type": [e.type for e in batch], "stream": [e.stream for e in batch],
        "order_id": [e.order_id for e in batch], "channel": [e.channel for e in batch],
        "node_id": [e.node_id for e in batch], "at": [e.at for e in batch],
        "data": [json.dumps(e.data, default=str) for e in batch]})
    written = {r.id: r.channel for r in rows}
    return [replace(e, channel=written[e.id]) for e in batch if e.id in written]
