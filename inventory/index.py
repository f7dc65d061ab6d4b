"""The availability index: every inventory position's figures in this process's memory, kept current by the
database's change announcements, so a quote or an availability answer reads no database.

Why LISTEN/NOTIFY and not logical decoding: a replication slot per API process would hold back WAL whenever a
process stops without dropping it, needs ``wal_level = logical`` and a replication grant, and the embedded
PostgreSQL has neither by default. Announcements need nothing but the triggers of migration 0028, cost one
notification per 30 positions written, are delivered at commit in commit order to every listener, and lose
nothing a reader cannot recover: on (re)connection the reader loads every position again, and each position carries
the number of its last change (inventory_positions.change_seq), so whatever order loads and announcements arrive
in, a position keeps the figures with the highest number.

Never trusted for reservations: a reservation is still the conditional UPDATE in PostgreSQL (inventory/service.py),
which refuses what the stock cannot cover. The index may be milliseconds stale; the stock cannot oversell.

Freshness: the reader announces a ping on its own channel every ``ping_every`` seconds. Announcements are one queue
in commit order, so when a ping sent at time t comes back, every change committed before t has been applied:
``as_of`` = t is a bound a reader can quote (``age`` = now − as_of).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import weakref
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional

import numpy as np

from sqlalchemy import event
from sqlalchemy.engine import Engine

from inventory.channels import ChannelView
from nodal.logging import get_logger

POSITIONS_CHANNEL = "nodal_positions"
# Every index of this process, for /metrics.
LIVE: "weakref.WeakSet[AvailabilityIndex]" = weakref.WeakSet()
NETWORK_CHANNEL = "nodal_network"
_LOAD_SQL = ("SELECT sku, array_agg(node_id) AS nodes, array_agg(on_hand) AS on_hand, array_agg(reserved) AS reserved,"
             " array_agg(safety_stock) AS safety, array_agg(change_seq) AS seq FROM inventory_positions GROUP BY sku")


# When this process last committed a write to inventory_positions (epoch seconds). A reader in this process waits
# for its index to pass it (AvailabilityIndex.caught_up): what a process wrote, it reads back.
_written_at = 0.0


def note_written(conn) -> None:
    """A write to positions in this transaction (for statements run on the driver connection, which the engine's
    events do not see); ``conn``: a SQLAlchemy (async) connection."""
    conn.info["positions_written"] = True


_INDEXED_TABLES = ("inventory_positions", "protected_stock", "incoming_supply", "supply_claims")


@event.listens_for(Engine, "after_cursor_execute")
def _note_positions_write(conn, cursor, statement, parameters, context, executemany) -> None:
    head = statement[:400]
    if head.lstrip()[:6].upper() != "SELECT" and any(t in head for t in _INDEXED_TABLES):
        conn.info["positions_written"] = True


@event.listens_for(Engine, "commit")
def _positions_committed(conn) -> None:
    global _written_at
    if conn.info.pop("positions_written", False):
        _written_at = time.time()


@event.listens_for(Engine, "rollback")
def _positions_not_written(conn) -> None:
    conn.info.pop("positions_written", None)


class SkuRow:
    """One SKU's positions: node columns (sorted) and their figures, with each one's change number."""

    __slots__ = ("nodes", "on_hand", "reserved", "safety", "seq", "version")

    def __init__(self, nodes: np.ndarray, on_hand: np.ndarray, reserved: np.ndarray, safety: np.ndarray,
                 seq: np.ndarray):
        order = np.argsort(nodes, kind="stable")
        self.nodes = nodes[order].astype(np.int32)
        self.on_hand = on_hand[order].astype(np.int64)
        self.reserved = reserved[order].astype(np.int64)
        self.safety = safety[order].astype(np.int64)
        self.seq = seq[order].astype(np.int64)
        self.version = 0  # bumped on every change: answers cached per SKU are keyed by it

    def set(self, column: int, seq: int, on_hand: int, reserved: int, safety: int) -> bool:
        """A position's new figures, unless the row already has a later change (False)."""
        at = int(np.searchsorted(self.nodes, column))
        if at < len(self.nodes) and self.nodes[at] == column:
            if self.seq[at] >= seq:
                return False
            self.on_hand[at], self.reserved[at], self.safety[at], self.seq[at] = on_hand, reserved, safety, seq
        else:  # a new position: rare (a node starts carrying the SKU)
            self.nodes = np.insert(self.nodes, at, column)
            self.on_hand = np.insert(self.on_hand, at, on_hand)
            self.reserved = np.insert(self.reserved, at, reserved)
            self.safety = np.insert(self.safety, at, safety)
            self.seq = np.insert(self.seq, at, seq)
        self.version += 1
        return True


@dataclass
class Positions:
    """Every position, per SKU, in arrays; nodes are columns numbered in the order first seen."""

    node_ids: list[str] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)
    rows: dict[str, SkuRow] = field(default_factory=dict)
    seq: int = 0  # the highest change number applied
    count: int = 0  # positions held
    # Shared by every load of one index (columns keep their numbers); a load runs in a thread.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def column(self, node_id: str) -> int:
        c = self.columns.get(node_id)
        if c is None:
            with self.lock:
                c = self.columns.get(node_id)
                if c is None:
                    c = self.columns[node_id] = len(self.node_ids)
                    self.node_ids.append(node_id)
        return c

    def fresh(self) -> "Positions":
        """An empty table numbering nodes as this one does."""
        return Positions(node_ids=self.node_ids, columns=self.columns, lock=self.lock)

    def load(self, rows: Iterable) -> "Positions":
        """From (sku, node ids, on hand, reserved, safety stock, change numbers) per SKU."""
        for sku, nodes, on_hand, reserved, safety, seq in rows:
            cols = np.fromiter((self.column(n) for n in nodes), dtype=np.int32, count=len(nodes))
            row = self.rows[sku] = SkuRow(cols, np.asarray(on_hand), np.asarray(reserved), np.asarray(safety),
                                          np.asarray(seq))
            self.count += len(cols)
            if len(cols):
                self.seq = max(self.seq, int(row.seq.max()))
        return self

    def apply(self, changes: Iterable) -> int:
        """Announced changes [seq, node, sku, on hand, reserved, safety stock]; returns how many were newer."""
        applied = 0
        for seq, node_id, sku, on_hand, reserved, safety in changes:
            row = self.rows.get(sku)
            column = self.column(node_id)
            if row is None:
                self.rows[sku] = SkuRow(np.array([column]), np.array([on_hand]), np.array([reserved]),
                                        np.array([safety]), np.array([seq]))
                self.count += 1
                applied += 1
            else:
                before = len(row.nodes)
                if row.set(column, seq, on_hand, reserved, safety):
                    applied += 1
                    self.count += len(row.nodes) - before
            self.seq = max(self.seq, seq)
        return applied

    def figures(self, sku: str, node_id: str) -> Optional[tuple[int, int, int]]:
        """(on hand, reserved, safety stock) of one position, or None."""
        row, column = self.rows.get(sku), self.columns.get(node_id)
        if row is None or column is None:
            return None
        at = int(np.searchsorted(row.nodes, column))
        if at < len(row.nodes) and row.nodes[at] == column:
            return int(row.on_hand[at]), int(row.reserved[at]), int(row.safety[at])
        return None


def channel_ats(row: SkuRow, view: Optional[ChannelView], protected: Optional[np.ndarray] = None) -> np.ndarray:
    """Available-to-sell of a SKU's positions as one customer of a channel may take it, in the row's order
    (inventory.arithmetic.channel_available, on arrays; ``protected``: units protected for other tiers per
    position)."""
    ats = row.on_hand - row.reserved - row.safety
    if view is not None and (view.buffer_units or view.buffer_pct):
        ats = ats - view.buffer_units - np.ceil(row.on_hand * float(view.buffer_pct) / 100).astype(np.int64)
    if protected is not None:
        ats = ats - protected
    return np.maximum(ats, 0)


@dataclass(frozen=True)
class Freshness:
    source: str  # "index" (this process's memory) or "database" (read live: the index is not loaded)
    seq: int  # the highest change number applied
    as_of: float  # epoch seconds: every change committed before it is in
    age_ms: float

    def answer(self, now: float) -> dict:
        """As an API answer carries it; a database read is as of ``now`` (epoch seconds)."""
        as_of = self.as_of if self.source == "index" else now
        return {"source": self.source, "seq": self.seq,
                "as_of": datetime.fromtimestamp(as_of, timezone.utc).isoformat().replace("+00:00", "Z"),
                "age_ms": round(self.age_ms, 1)}


class AvailabilityIndex:
    """The positions, protected stock and incoming-supply flags of one database, kept current by announcements."""

    def __init__(self, database_url: str, ping_every: float = 0.2, resync_after: float = 5.0,
                 on_lag: Callable[[float], None] = lambda s: None,
                 on_network: Callable[[str], None] = lambda table: None):
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.ping_every, self.resync_after = ping_every, resync_after
        self.on_lag, self.on_network = on_lag, on_network
        self.positions = Positions()
        # sku → [(column, tier, qty)] of protected stock; bumped version on every reload
        self.protected: dict[str, list[tuple[int, Optional[str], int]]] = {}
        self.protected_version = 0
        self.incoming: set[str] = set()  # SKUs with supply on the way
        self.supply_version = 0  # bumped when incoming supply or its claims change (cached supply lists expire)
        self.loaded = asyncio.Event()
        self.as_of = 0.0
        self.resyncs = 0
        self._ping_channel = f"nodal_index_{os.getpid()}_{secrets.token_hex(4)}"
        self._want_load = self._want_side = self._side_loading = False
        self._last_ping = 0.0
        self._wake = asyncio.Event()
        self._loading = False
        self._buffer: list[list] = []
        self._tasks: list[asyncio.Task] = []
        self._ping_now = asyncio.Event()
        self._waiters: list[tuple[float, asyncio.Future]] = []
        self.log = get_logger()
        LIVE.add(self)

    # ------------------------------------------------------------------ reading
    @property
    def ready(self) -> bool:
        return self.loaded.is_set()

    def freshness(self) -> Freshness:
        now = time.time()
        return Freshness("index", self.positions.seq, self.as_of, max(now - self.as_of, 0.0) * 1000)

    async def caught_up(self, timeout: float = 0.1) -> bool:
        """Wait (at most ``timeout``) until every position write this process committed is in; False: still not."""
        target = _written_at
        if self.as_of >= target:
            return True
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._ping_now.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _advance(self, as_of: float) -> None:
        if as_of <= self.as_of:
            return
        self.as_of = as_of
        if self._waiters:
            waiting = []
            for target, future in self._waiters:
                if target <= as_of:
                    if not future.done():
                        future.set_result(True)
                elif not future.done():
                    waiting.append((target, future))
            self._waiters = waiting

    def protected_for_others(self, sku: str, row: SkuRow, tier: Optional[str]) -> Optional[np.ndarray]:
        """Units protected for tiers other than ``tier`` per position of the row (None: none)."""
        entries = self.protected.get(sku)
        if not entries:
            return None
        out = np.zeros(len(row.nodes), dtype=np.int64)
        for column, owner, qty in entries:
            if owner != tier:
                at = int(np.searchsorted(row.nodes, column))
                if at < len(row.nodes) and row.nodes[at] == column:
                    out[at] += qty
        return out

    def dense(self, skus: Iterable[str], view: Optional[ChannelView], tier: Optional[str]
              ) -> tuple[dict[str, int], list[str], dict[str, np.ndarray]]:
        """(node columns, node ids, sku → available-to-sell per column) for a request's SKUs as this channel's customer
        of this tier sees them (0 where a node holds none), in vectors the quote engine (routing/fast.py) reads without
        a loop per node."""
        positions = self.positions
        width = len(positions.node_ids)
        out = {}
        for sku in skus:
            vector = np.zeros(width, dtype=np.int64)
            row = positions.rows.get(sku)
            if row is not None:
                vector[row.nodes] = channel_ats(row, view, self.protected_for_others(sku, row, tier))
            out[sku] = vector
        return positions.columns, positions.node_ids, out

    # ------------------------------------------------------------------ running
    async def start(self, wait: float = 30.0) -> None:
        """Connect, load and follow; waits up to ``wait`` s for the first load (until then readers go to the
        database)."""
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._loader()),
                       asyncio.create_task(self._ping())]
        try:
            await asyncio.wait_for(self.loaded.wait(), wait)
        except asyncio.TimeoutError:
            self.log.warning("index.not_loaded_yet", waited_s=wait)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _follow(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    for channel in (POSITIONS_CHANNEL, NETWORK_CHANNEL, self._ping_channel):
                        await conn.execute(f"LISTEN {channel}")
                    # Listening from here on: a load now misses nothing (what it predates is announced after).
                    self._request(load=True, side=True)
                    self.on_network("*")
                    async for n in conn.notifies():
                        self._dispatch(n.channel, n.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.warning("index.listen_lost", error=type(e).__name__)
                await asyncio.sleep(0.5)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == self._ping_channel:
            self._last_ping = float(payload)
            # Held back while a load or a reload of protected stock or supply is due: those are not in yet.
            if self.ready and not self._loading and not self._want_side and not self._side_loading:
                self._advance(self._last_ping)
        elif channel == POSITIONS_CHANNEL:
            if payload == "resync":
                self._request(load=True)
                return
            change = json.loads(payload)
            lag = time.time() - change["at"]
            self.on_lag(lag)
            if self._loading:
                self._buffer.extend(change["rows"])
            else:
                self.positions.apply(change["rows"])
                if lag > self.resync_after:
                    # Fallen behind (a stalled process, a burst): a fresh load is the quicker way back.
                    self.log.warning("index.behind", lag_s=round(lag, 2))
                    self._request(load=True)
        elif channel == NETWORK_CHANNEL:
            if payload in ("protected_stock", "incoming_supply", "supply_claims"):
                if payload != "supply_claims":
                    self._request(side=True)
                self.supply_version += 1
            else:
                self.on_network(payload)

    async def _loader(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._want_load:
                    self._want_load = False
                    await self._load()
                if self._want_side:
                    self._want_side = False
                    await self._load_side()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.warning("index.load_failed", error=type(e).__name__)
                self._want_load = True
                await asyncio.sleep(1.0)
                self._wake.set()

    def _request(self, load: bool = False, side: bool = False) -> None:
        self._want_load |= load
        self._want_side |= side
        self._wake.set()

    async def _load(self) -> None:
        started = time.perf_counter()
        sent = time.time()
        self._loading, self._buffer = True, []
        try:
            positions = await asyncio.to_thread(self._read_positions)
            positions.apply(self._buffer)  # announced while loading: only what is newer than the load counts
            self.positions, self._buffer = positions, []
        finally:
            self._loading = False
        # The load saw every change committed before it started.
        self._advance(sent)
        self.resyncs += 1
        if self._want_side:  # protected stock and supply flags before anyone reads (at connect both are due)
            self._want_side = False
            await self._load_side()
        self.loaded.set()
        self.log.info("index.loaded", positions=positions.count, skus=len(positions.rows), seq=positions.seq,
                      seconds=round(time.perf_counter() - started, 3))

    def _read_positions(self) -> Positions:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return self.positions.fresh().load(conn.execute(_LOAD_SQL))

    async def _load_side(self) -> None:
        started, self._side_loading = time.time(), True
        try:
            await self._read_side()
        finally:
            self._side_loading = False
        if not self._want_side and self._last_ping:
            self._advance(min(self._last_ping, started))

    async def _read_side(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            protected: dict[str, list] = {}
            for node_id, sku, tier, qty in await (await conn.execute(
                    "SELECT node_id, sku, tier, qty FROM protected_stock WHERE qty > 0")).fetchall():
                protected.setdefault(sku, []).append((self.positions.column(node_id), tier, int(qty)))
            incoming = {r[0] for r in await (await conn.execute(
                "SELECT DISTINCT sku FROM incoming_supply WHERE qty > 0")).fetchall()}
        self.protected, self.incoming = protected, incoming
        self.protected_version += 1
        self.supply_version += 1

    async def _ping(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    while True:
                        self._ping_now.clear()
                        await conn.execute("SELECT pg_notify(%s, %s)", (self._ping_channel, repr(time.time())))
                        try:
                            await asyncio.wait_for(self._ping_now.wait(), self.ping_every)
                        except asyncio.TimeoutError:
                            pass
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.info("index.ping_lost", error=type(e).__name__)
                await asyncio.sleep(0.5)
