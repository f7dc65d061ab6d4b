"""What every simulated external system shares: latency, injected failures, durable idempotency."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Awaitable, Callable

from sqlalchemy import text
from temporalio import activity

from nodal.db import Database


def _record(system: str, outcome: str, seconds: float) -> None:
    """nodal_adapter_calls_total{system, outcome} and nodal_adapter_call_seconds{system}, through the activity's
    metric meter (the worker's Prometheus endpoint); nothing outside an activity."""
    try:
        meter = activity.metric_meter()
    except RuntimeError:
        return
    meter.create_counter("nodal_adapter_calls", "Calls to external systems (carrier, payment gateway, notifications) "
                         "by outcome: ok, replayed (answered from its idempotency key), failed, timed_out").add(
        1, {"system": system, "outcome": outcome})
    meter.create_histogram_float("nodal_adapter_call", "External system call time", "seconds").record(
        seconds, {"system": system})


class ExternalSystemError(Exception):
    """A transient failure of an external system (timeout, 5xx): safe to retry with the same key."""


class SimulatedSystem:
    system = "external"

    def __init__(self, db: Database, latency_ms: int = 20, failure_rate: float = 0.0, seed: int | None = None,
                 timeout_rate: float = 0.0, timeout_ms: int = 2000):
        self.db = db
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.timeout_rate = timeout_rate
        self.timeout_ms = timeout_ms
        self._rng = random.Random(seed)

    async def _idempotent(self, key: str, produce: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Answer a call once per key, as a gateway with idempotency keys does; counted by outcome (metrics)."""
        started = time.perf_counter()
        outcome = "failed"
        try:
            response, outcome = await self._answer(key, produce)
            return response
        except ExternalSystemError as e:
            outcome = "timed_out" if "timed out" in str(e) else "failed"
            raise
        finally:
            _record(self.system, outcome, time.perf_counter() - started)

    async def _answer(self, key: str, produce: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], str]:
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(
                text("SELECT response FROM adapter_calls WHERE system = :s AND idempotency_key = :k"),
                dict(s=self.system, k=key),
            )).first()
        if row is not None:
            return dict(row.response), "replayed"
        if self.latency_ms:
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * self.latency_ms / 1000)
        if self._rng.random() < self.failure_rate:
            raise ExternalSystemError(f"{self.system} unavailable (simulated)")
        # A timeout: we wait, give up and never see the answer, though half the time the system did the work
        # (the dangerous case: a charge went through and only a retry with the same key may find it).
        timed_out = self._rng.random() < self.timeout_rate
        if timed_out and self._rng.random() < 0.5:
            await asyncio.sleep(self.timeout_ms / 1000)
            raise ExternalSystemError(f"{self.system} timed out after {self.timeout_ms} ms (simulated)")
        response = await self._store(key, await produce())
        if timed_out:
            await asyncio.sleep(self.timeout_ms / 1000)
            raise ExternalSystemError(f"{self.system} timed out after {self.timeout_ms} ms (simulated)")
        return response, "ok"

    async def _store(self, key: str, response: dict[str, Any]) -> dict[str, Any]:
        async with self.db.engine.begin() as conn:
            # A concurrent retry may have answered first: its answer is the one that counts.
            row = (await conn.execute(
                text(
                    "INSERT INTO adapter_calls (system, idempotency_key, response, created_at)"
                    " VALUES (:s, :k, CAST(:r AS jsonb), now())"
                    " ON CONFLICT (system, idempotency_key) DO UPDATE SET system = EXCLUDED.system"
                    " RETURNING response"
                ),
                dict(s=self.system, k=key, r=json.dumps(response, default=str)),
            )).first()
        return dict(row.response)

    def rng(self) -> random.Random:
        return self._rng
