"""This API process's availability index (inventory/index.py): started with the app, or on the first request
that wants it when the app runs without its lifespan (tests on an ASGI transport)."""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.routes.ops import REGISTRY
from inventory.index import LIVE, AvailabilityIndex, Freshness
from routing.store import forget_network

INDEX_LAG = Histogram("nodal_availability_index_lag_seconds", "From a position change's statement to its announcement "
                      "applied in this process's availability index", registry=REGISTRY,
                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0))


class _IndexCollector(Collector):
    def collect(self):
        indexes = [i for i in list(LIVE) if i.ready]
        age = GaugeMetricFamily("nodal_availability_index_age_seconds", "How old the availability index can be: "
                                "every change committed before now minus this is in it (the worst index of the process)")
        seq = GaugeMetricFamily("nodal_availability_index_seq", "The highest position change number applied")
        positions = GaugeMetricFamily("nodal_availability_index_positions", "Positions held in memory")
        loads = GaugeMetricFamily("nodal_availability_index_loads", "Full loads since start (connects, resyncs)")
        if indexes:
            age.add_metric([], max(i.freshness().age_ms for i in indexes) / 1000)
            seq.add_metric([], min(i.positions.seq for i in indexes))
            positions.add_metric([], max(i.positions.count for i in indexes))
            loads.add_metric([], sum(i.resyncs for i in indexes))
        yield from (age, seq, positions, loads)


REGISTRY.register(_IndexCollector())


# What an answer read from the database says of its freshness: current as it was read.
DATABASE_READ = Freshness("database", 0, 0.0, 0.0)


def _on_network(table: str) -> None:
    # Any process's network edit reaches every process's quote memo at once (the memo's TTL is a backstop).
    forget_network()


async def start_index(state, wait: float = 30.0) -> Optional[AvailabilityIndex]:
    if not state.settings.availability_index:
        return None
    lock = getattr(state, "index_lock", None)
    if lock is None:
        lock = state.index_lock = asyncio.Lock()
    async with lock:
        index = getattr(state, "index", None)
        if index is None:
            index = state.index = AvailabilityIndex(state.db.url, on_lag=INDEX_LAG.observe, on_network=_on_network)
            await index.start(wait)
    return index


async def stop_index(state) -> None:
    index = getattr(state, "index", None)
    if index is not None:
        state.index = None
        await index.stop()


# The feed pings itself 5 times a second: a ping older than this and its announcements may not be arriving.
FEED_CURRENT_SECONDS = 2.0


def memo_seconds(settings, index: Optional[AvailabilityIndex]) -> float:
    """How long a read of the network may serve (routing.store.memo): long while the index's feed, which announces
    every edit, is current; the quote TTL without it or while it lags (a connection gone quiet)."""
    if index is not None and time.time() - index.as_of < FEED_CURRENT_SECONDS:
        return max(settings.network_memo_seconds, settings.quote_cache_seconds)
    return settings.quote_cache_seconds


async def index_of(state) -> Optional[AvailabilityIndex]:
    """The index when it is loaded and has every position write this process committed; None: read the database."""
    index = getattr(state, "index", None)
    if index is None:
        index = await start_index(state)
    if index is None or not index.ready or not await index.caught_up():
        return None
    return index
