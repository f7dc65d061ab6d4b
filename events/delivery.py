"""Deliveries of one subscription: signed POSTs, in order per stream, retried with backoff, never lost.

The pending deliveries in PostgreSQL are the only state. A dispatcher (run by the subscription's workflow as a
long-running activity, so another worker takes over when this one dies) sends each due stream's pending deliveries
in order (a run: a stream whose lowest pending delivery is due, up to RUN_LENGTH of them, one after another), at
most ``concurrency`` streams at once, and records each answer: 2xx delivered; anything else (an error status, a
timeout, a refused connection) is tried again after an exponential backoff with jitter until ``retry_for`` after
the event, then failed, and its stream waits for it meanwhile (a later event never overtakes an earlier one). A
crash between a POST and its record sends it again with the same ``webhook-id``: at least once, deduped by
receivers.

It wakes on the outbox's notification for its subscription and polls once a second besides, so a notification
missed (a database restart) delays nothing by more than that. Its few statements go over a connection of its own
(prepared, autocommit); the POSTs over aiohttp, which spends a fraction of httpx's CPU per request.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

from standardwebhooks import Webhook

from events.listen import libpq_url, listen
from events.outbox import CHANGED, deliveries_channel
from nodal.logging import get_logger

GONE, DONE = True, False
USER_AGENT = "Nodal-Webhooks/1.0"
RUN_LENGTH = 20  # a stream's deliveries sent in one go
RELOAD_EVERY = 5.0  # the subscription's url and secrets are read again this often (and when it is changed)
POLL_EVERY = 1.0
GATHER = 0.1  # after a wake with nothing to do, this long for the rest of the burst (and of the next ones)
COUNT_EVERY = 2.0  # the subscription's counters (delivered, failed) are written this often
PURGE_EVERY = 60.0
# The API starts a subscription's process before it commits the subscription: a process that has never seen its
# row waits this long for the commit before it takes the row's absence for a deletion.
NEW_GRACE = 30.0

# Per subscription row ``w``: its undelivered events and when the oldest was written (GET /webhooks, /metrics).
PENDING_SQL = ("LEFT JOIN LATERAL (SELECT COUNT(*) AS pending, MIN(d.created_at) AS oldest FROM webhook_deliveries d"
               " WHERE d.webhook = w.name AND d.status = 'pending') p ON TRUE")
_LOAD = ("SELECT generation, url, secret, previous_secret, previous_until > now() AS previous_valid"
         " FROM webhooks WHERE name = %(w)s")
# The due streams (their head, the lowest pending event, is due) and up to k pending deliveries of each, in order.
_RUNS = """
WITH heads AS (
  SELECT DISTINCT ON (stream) stream, event_seq, next_attempt_at FROM webhook_deliveries
  WHERE webhook = %(w)s AND status = 'pending' ORDER BY stream, event_seq
), due AS (
  SELECT stream, event_seq FROM heads WHERE next_attempt_at <= now() AND NOT (stream = ANY(%(busy)s::varchar[]))
  ORDER BY event_seq LIMIT %(n)s
)
SELECT d.id, d.stream, d.attempts, e.id AS event_id, e.type, e.at, CAST(e.data AS text) AS data
FROM due CROSS JOIN LATERAL (
  SELECT x.id, x.stream, x.attempts, x.event_seq FROM webhook_deliveries x
  WHERE x.webhook = %(w)s AND x.stream = due.stream AND x.status = 'pending' AND x.event_seq >= due.event_seq
  ORDER BY x.event_seq LIMIT %(k)s) d
JOIN events e ON e.seq = d.event_seq
ORDER BY due.event_seq, d.event_seq
"""
_NEXT_DUE = """
SELECT EXTRACT(EPOCH FROM MIN(next_attempt_at) - now()) FROM
  (SELECT DISTINCT ON (stream) next_attempt_at FROM webhook_deliveries
   WHERE webhook = %(w)s AND status = 'pending' ORDER BY stream, event_seq) d
"""
# The outcome of each attempt; decided in the database's clock, like the events' own times.
_RECORD = """
UPDATE webhook_deliveries d SET
  status = CASE WHEN u.ok THEN 'delivered'
                WHEN d.created_at + %(retry_for)s::interval < now() + make_interval(secs => u.delay) THEN 'failed'
                ELSE 'pending' END,
  attempts = d.attempts + 1,
  next_attempt_at = CASE WHEN u.ok THEN d.next_attempt_at ELSE now() + make_interval(secs => u.delay) END,
  last_status_code = u.code, last_error = u.error,
  delivered_at = CASE WHEN u.ok THEN now() END
FROM unnest(%(id)s::bigint[], %(ok)s::boolean[], %(delay)s::float8[], %(code)s::integer[],
            %(error)s::varchar[]) AS u(id, ok, delay, code, error)
WHERE d.id = u.id AND d.status = 'pending'
RETURNING d.status
"""
_COUNT = ("UPDATE webhooks SET delivered = delivered + %(d)s, failed = failed + %(f)s,"
          " failed_attempts = failed_attempts + %(a)s WHERE name = %(w)s")
_PURGE = ("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE webhook = %(w)s"
          " AND status <> 'pending' AND COALESCE(delivered_at, next_attempt_at) < now() - %(keep)s::interval"
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
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(s.sign(msg_id, now, body) for s in signers)}


class Dispatcher:
    """One subscription's deliveries. A run is one stream's next pending deliveries (up to RUN_LENGTH), sent one after
    another on one connection; up to ``concurrency`` runs at once, each of another stream. A run stops at its first
    failure (the rest wait for that one's retry). A stream stays busy until its run's outcomes are recorded, so
    nothing is sent twice by this process."""

    def __init__(self, database_url: str, name: str, generation: str, policy: Policy,
                 heartbeat: Callable[[], None] = lambda: None):
        self.database_url = database_url
        self.name, self.generation, self.policy, self.heartbeat = name, generation, policy, heartbeat
        self.rng = random.Random()
        self.woken = asyncio.Event()  # deliveries written
        self.changed = asyncio.Event()  # the subscription's url or secrets changed
        self.log = get_logger(webhook=name)
        self.conn = None  # its own connection, autocommit, statements prepared: the hot loop's few round trips
        self.counts = {"d": 0, "f": 0, "a": 0}  # delivered, failed, failed attempts not yet on the subscription

    async def run(self, run_for: float) -> bool:
        """Deliver for ``run_for`` seconds; GONE as soon as the subscription (this generation of it) is deleted."""
        import aiohttp
        import psycopg
        from psycopg.rows import namedtuple_row

        self.conn = await psycopg.AsyncConnection.connect(libpq_url(self.database_url), autocommit=True,
                                                          prepare_threshold=1, row_factory=namedtuple_row)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            connector=aiohttp.TCPConnector(limit=self.policy.concurrency, ttl_dns_cache=60),
            headers={"user-agent": USER_AGENT}, auto_decompress=False)
        listener = asyncio.create_task(listen(self.database_url, deliveries_channel(self.name), self.woken,
                                              others={CHANGED: self.changed}))
        inflight: dict[asyncio.Task, str] = {}  # a run → its stream
        try:
            gone = await self._loop(session, inflight, run_for)
            await self._count()
            return gone
        finally:
            for t in list(inflight) + [listener]:
                t.cancel()
            await asyncio.gather(*inflight, listener, return_exceptions=True)
            await session.close()
            await self.conn.close()

    async def _loop(self, session, inflight: dict[asyncio.Task, str], run_for: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + run_for
        target, reload_at, purge_at = await self._first_load(), loop.time() + RELOAD_EVERY, loop.time()
        look, polled, saturated = True, True, False
        retry_at = float("inf")  # when a delivery that failed here is due again
        count_at = loop.time() + COUNT_EVERY
        while True:
            self.heartbeat()
            now = loop.time()
            # Taken before anything is read: a notification that comes while we read wakes the next round.
            woke, moved = self.woken.is_set(), self.changed.is_set()
            self.woken.clear()
            self.changed.clear()
            if now >= reload_at or moved:
                target, reload_at = await self._load(), now + RELOAD_EVERY
            if target is None:
                self.log.info("webhook.gone")
                return GONE
            if now >= purge_at:
                await self._purge()
                purge_at = now + PURGE_EVERY
            if now >= count_at:
                await self._count()
                count_at = now + COUNT_EVERY
            if now >= end and not inflight:
                return DONE
            wait = min(POLL_EVERY, max(retry_at - now, 0.0))
            free = self.policy.concurrency - len(inflight)
            if free > 0 and now < end and (look or woke):
                if woke and not look:
                    await asyncio.sleep(GATHER)  # the rest of a burst of writes comes along in the same look
                runs: dict[str, list] = {}
                for row in await self._runs(free, sorted(set(inflight.values()))):
                    runs.setdefault(row.stream, []).append(row)
                saturated = len(runs) == free  # more streams may be due than there were slots
                for stream, rows in runs.items():
                    inflight[asyncio.create_task(self._send_run(session, target, rows))] = stream
                if not runs and not inflight and polled:  # only a retry can be due before the next poll
                    due = await self._next_due()
                    if due is not None:
                        wait = min(max(due, 0.01), POLL_EVERY)
            wake = asyncio.create_task(self.woken.wait())
            done, _ = await asyncio.wait([*inflight, wake], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            finished = [t for t in inflight if t.done()]
            outcomes = [r for t in finished for r in t.result()]
            if outcomes:
                await self._record(outcomes)
                # The soonest retry among these failures: looked at then, not at the next poll.
                retries = [o[2] for o in outcomes if not o[1]]
                if retries:
                    retry_at = min(retry_at, loop.time() + min(retries))
            for t in finished:
                del inflight[t]  # only now: its outcomes are recorded
            polled = not done
            if loop.time() >= retry_at:
                retry_at = float("inf")
            # Look again when the poll interval passed, or slots came free while streams may be waiting: the last look
            # filled every slot, or a run went through whole (its stream may have more). Anything else written since
            # comes with its notification.
            look = polled or bool(finished) and (saturated or any(
                len(t.result()) == RUN_LENGTH and t.result()[-1][1] for t in finished))

    async def _first_load(self) -> Optional[Target]:
        """The subscription as its process first finds it; a row not there yet is the creating transaction's, still
        open (up to NEW_GRACE), not a deletion: ending now would leave the subscription without its process."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + NEW_GRACE
        while (row := await self._row()) is None and loop.time() < give_up:
            self.heartbeat()
            await asyncio.sleep(0.1)
        return self._target(row)

    async def _row(self):
        return await (await self.conn.execute(_LOAD, {"w": self.name})).fetchone()

    async def _load(self) -> Optional[Target]:
        return self._target(await self._row())

    def _target(self, row) -> Optional[Target]:
        if row is None or row.generation != self.generation:
            return None
        secrets = [row.secret] + ([row.previous_secret] if row.previous_secret and row.previous_valid else [])
        return Target(row.generation, row.url, [Webhook(s) for s in secrets])

    async def _runs(self, n: int, busy: list[str]):
        return await (await self.conn.execute(_RUNS, {"w": self.name, "busy": busy, "n": n, "k": RUN_LENGTH})).fetchall()

    async def _next_due(self) -> Optional[float]:
        due = (await (await self.conn.execute(_NEXT_DUE, {"w": self.name})).fetchone())[0]
        return None if due is None else float(due)

    async def _send_run(self, session, target: Target, rows: list) -> list[tuple]:
        out = []
        for row in rows:
            outcome = await self._send(session, target, row)
            out.append(outcome)
            if not outcome[1]:
                break  # in order: the rest of the stream waits for this one's retry
        return out

    async def _send(self, session, target: Target, row) -> tuple:
        import aiohttp

        body = body_of(row.type, row.at, row.data)
        code, error = None, None
        try:
            async with session.post(target.url, data=body, allow_redirects=False,
                                    headers=signed_headers(target.signers, row.event_id, body)) as r:
                code = r.status
                await r.read()
            if 200 <= code < 300:
                return row.id, True, 0.0, code, None
            error = f"HTTP {code}"
        except asyncio.TimeoutError:
            error = f"timed out after {self.policy.timeout:g} s"
        except aiohttp.ClientError as e:
            error = f"{type(e).__name__}: {str(e)[:200]}"
        return row.id, False, self.policy.delay(row.attempts + 1, self.rng), code, error

    async def _record(self, results: list[tuple]) -> None:
        ids, ok, delay, code, error = (list(c) for c in zip(*results))
        # The deliveries alone: the subscription's counters go in their own statement now and then (never both
        # locked at once, as a deletion locks the subscription, then its deliveries).
        rows = await (await self.conn.execute(_RECORD, {"id": ids, "ok": ok, "delay": delay, "code": code,
                                                        "error": error, "retry_for": self.policy.retry_for})).fetchall()
        statuses = [r.status for r in rows]
        self.counts["d"] += statuses.count("delivered")
        self.counts["f"] += statuses.count("failed")
        self.counts["a"] += ok.count(False)
        if "failed" in statuses:  # rare, and worth seeing at once
            self.log.warning("webhook.delivery_failed", deliveries=statuses.count("failed"))
            await self._count()

    async def _count(self) -> None:
        if any(self.counts.values()):
            await self.conn.execute(_COUNT, {"w": self.name, **self.counts})
            self.counts = {"d": 0, "f": 0, "a": 0}

    async def _purge(self) -> None:
        await self.conn.execute(_PURGE, {"w": self.name, "keep": self.policy.keep})
