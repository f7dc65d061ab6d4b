"""Deliveries of one subscription: signed POSTs, in order per stream, retried with backoff, never lost.

The pending deliveries in PostgreSQL are the only state: a dispatcher (run by the subscription's workflow as a
long-running activity, so another worker takes over when this one dies) sends the head of each stream (its pending
delivery with the lowest event sequence), at most ``concurrency`` at once and one per stream, and records each
answer: 2xx delivered; anything else (an error status, a timeout, a refused connection) is tried again after an
exponential backoff with jitter until ``retry_for`` after the event, then failed (the stream moves on). A crash
between a POST and its record sends it again with the same ``webhook-id``: at least once, deduped by receivers.

It wakes on the outbox's notification for its subscription and polls once a second besides, so a notification
missed (a database restart) delays nothing by more than that.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from events.listen import listen
from events.outbox import DELIVERIES_CHANNEL
from nodal.logging import get_logger

GONE, DONE = True, False
USER_AGENT = "Nodal-Webhooks/1.0"
RELOAD_EVERY = 5.0  # the subscription's url and secrets are read again this often (and when it is changed)
POLL_EVERY = 1.0
PURGE_EVERY = 60.0

_LOAD = text("SELECT generation, url, secret, previous_secret, previous_until > now() AS previous_valid"
             " FROM webhooks WHERE name = :w")
_HEADS = text("""
SELECT d.id, d.stream, d.attempts, e.id AS event_id, e.type, e.at, CAST(e.data AS text) AS data
FROM (SELECT DISTINCT ON (stream) id, stream, event_seq, attempts, next_attempt_at
      FROM webhook_deliveries WHERE webhook = :w AND status = 'pending' ORDER BY stream, event_seq) d
JOIN events e ON e.seq = d.event_seq
WHERE d.next_attempt_at <= now() AND NOT (d.stream = ANY(CAST(:busy AS varchar[])))
ORDER BY d.event_seq LIMIT :n
""")
_NEXT_DUE = text("""
SELECT EXTRACT(EPOCH FROM MIN(next_attempt_at) - now()) FROM
  (SELECT DISTINCT ON (stream) next_attempt_at FROM webhook_deliveries
   WHERE webhook = :w AND status = 'pending' ORDER BY stream, event_seq) d
""")
# The outcome of each attempt; decided in the database's clock, like the events' own times.
_RECORD = text("""
UPDATE webhook_deliveries d SET
  status = CASE WHEN u.ok THEN 'delivered'
                WHEN d.created_at + CAST(:retry_for AS interval) < now() + make_interval(secs => u.delay) THEN 'failed'
                ELSE 'pending' END,
  attempts = d.attempts + 1,
  next_attempt_at = CASE WHEN u.ok THEN d.next_attempt_at ELSE now() + make_interval(secs => u.delay) END,
  last_status_code = u.code, last_error = u.error,
  delivered_at = CASE WHEN u.ok THEN now() END
FROM unnest(CAST(:id AS bigint[]), CAST(:ok AS boolean[]), CAST(:delay AS float8[]), CAST(:code AS integer[]),
            CAST(:error AS varchar[])) AS u(id, ok, delay, code, error)
WHERE d.id = u.id AND d.status = 'pending'
RETURNING d.status
""")
_COUNT = text("UPDATE webhooks SET delivered = delivered + :d, failed = failed + :f,"
              " failed_attempts = failed_attempts + :a WHERE name = :w")
_PURGE = text("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE webhook = :w"
              " AND status <> 'pending' AND COALESCE(delivered_at, next_attempt_at) < now() - CAST(:keep AS interval)"
              " LIMIT 5000)")


@dataclass
class Policy:
    timeout: float = 10.0
    backoff: float = 1.0
    backoff_cap: float = 3600.0
    retry_for: timedelta = timedelta(days=3)
    concurrency: int = 32
    keep: timedelta = timedelta(days=7)

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones (exponential, ±20% jitter)."""
        return min(self.backoff * 2 ** max(attempts - 1, 0), self.backoff_cap) * rng.uniform(0.8, 1.2)


@dataclass
class Target:
    generation: str
    url: str
    signers: list[Webhook]  # the secret, and the previous one while a rotation overlaps


def body_of(event_type: str, at: datetime, data_json: str) -> bytes:
    """``{type, timestamp, data}``: the data as stored, not parsed and dumped again."""
    return ('{"type":%s,"timestamp":%s,"data":%s}' % (
        json.dumps(event_type), json.dumps(at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")),
        data_json)).encode()


def signed_headers(signers: list[Webhook], msg_id: str, body: bytes, now: Optional[datetime] = None) -> dict[str, str]:
    """The Standard Webhooks headers: one ``v1,`` signature per secret in force, space-separated."""
    now = now or datetime.now(timezone.utc)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(s.sign(msg_id, now, body) for s in signers)}


class Dispatcher:
    def __init__(self, engine: AsyncEngine, database_url: str, name: str, generation: str, policy: Policy,
                 heartbeat: Callable[[], None] = lambda: None, client: Optional[httpx.AsyncClient] = None):
        self.engine, self.database_url = engine, database_url
        self.name, self.generation, self.policy, self.heartbeat = name, generation, policy, heartbeat
        self.client = client
        self.rng = random.Random()
        self.woken = asyncio.Event()
        self.log = get_logger(webhook=name)

    async def run(self, run_for: float) -> bool:
        """Deliver for ``run_for`` seconds; GONE as soon as the subscription (this generation of it) is deleted."""
        own = self.client is None
        client = self.client or httpx.AsyncClient(
            timeout=self.policy.timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=self.policy.concurrency,
                                max_keepalive_connections=self.policy.concurrency))
        listener = asyncio.create_task(listen(self.database_url, DELIVERIES_CHANNEL, self.woken, self.name))
        inflight: dict[asyncio.Task, str] = {}  # send → its stream
        try:
            return await self._loop(client, inflight, run_for)
        finally:
            for t in list(inflight) + [listener]:
                t.cancel()
            await asyncio.gather(*inflight, listener, return_exceptions=True)
            if own:
                await client.aclose()

    async def _loop(self, client: httpx.AsyncClient, inflight: dict[asyncio.Task, str], run_for: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + run_for
        target, reload_at, purge_at = await self._load(), loop.time() + RELOAD_EVERY, loop.time()
        look = True
        while True:
            self.heartbeat()
            now = loop.time()
            # Taken before anything is read: a notification that comes while we read wakes the next round.
            woke = self.woken.is_set()
            self.woken.clear()
            # A change (url, secret) notifies too: read again on every wake (one row by its key).
            if now >= reload_at or woke:
                target, reload_at = await self._load(), now + RELOAD_EVERY
            if target is None:
                self.log.info("webhook.gone")
                return GONE
            if now >= purge_at:
                await self._purge()
                purge_at = now + PURGE_EVERY
            if now >= end and not inflight:
                return DONE
            wait = POLL_EVERY
            free = self.policy.concurrency - len(inflight)
            if free > 0 and now < end and (look or woke):
                rows = await self._heads(free, sorted(set(inflight.values())))
                for row in rows:
                    inflight[asyncio.create_task(self._send(client, target, row))] = row.stream
                if not rows and not inflight:
                    due = await self._next_due()
                    if due is not None:
                        wait = min(max(due, 0.01), POLL_EVERY)
            wake = asyncio.create_task(self.woken.wait())
            done, _ = await asyncio.wait([*inflight, wake], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            finished = [t for t in inflight if t.done()]
            for t in finished:
                del inflight[t]
            if finished:
                await self._record([t.result() for t in finished])
            look = bool(finished) or not done  # a slot came free, or the poll interval passed

    async def _load(self) -> Optional[Target]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_LOAD, {"w": self.name})).first()
        if row is None or row.generation != self.generation:
            return None
        secrets = [row.secret] + ([row.previous_secret] if row.previous_secret and row.previous_valid else [])
        return Target(row.generation, row.url, [Webhook(s) for s in secrets])

    async def _heads(self, n: int, busy: list[str]):
        async with self.engine.connect() as conn:
            return (await conn.execute(_HEADS, {"w": self.name, "busy": busy, "n": n})).all()

    async def _next_due(self) -> Optional[float]:
        async with self.engine.connect() as conn:
            due = (await conn.execute(_NEXT_DUE, {"w": self.name})).scalar()
        return None if due is None else float(due)

    async def _send(self, client: httpx.AsyncClient, target: Target, row) -> tuple:
        body = body_of(row.type, row.at, row.data)
        code, error = None, None
        try:
            r = await client.post(target.url, content=body, headers=signed_headers(target.signers, row.event_id, body))
            code = r.status_code
            if 200 <= code < 300:
                return row.id, True, 0.0, code, None
            error = f"HTTP {code}"
        except httpx.TimeoutException:
            error = f"timed out after {self.policy.timeout:g} s"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {str(e)[:200]}"
        return row.id, False, self.policy.delay(row.attempts + 1, self.rng), code, error

    async def _record(self, results: list[tuple]) -> None:
        ids, ok, delay, code, error = (list(c) for c in zip(*results))
        async with self.engine.begin() as conn:
            # The subscription's row first, as a deletion or replay takes it: never a lock cycle with them.
            await conn.execute(text("SELECT 1 FROM webhooks WHERE name = :w FOR NO KEY UPDATE"), {"w": self.name})
            statuses = (await conn.execute(_RECORD, {"id": ids, "ok": ok, "delay": delay, "code": code,
                                                     "error": error, "retry_for": self.policy.retry_for})).scalars().all()
            await conn.execute(_COUNT, {"w": self.name, "d": statuses.count("delivered"),
                                        "f": statuses.count("failed"), "a": ok.count(False)})
        if "failed" in statuses:
            self.log.warning("webhook.delivery_failed", deliveries=statuses.count("failed"))

    async def _purge(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_PURGE, {"w": self.name, "keep": self.policy.keep})
