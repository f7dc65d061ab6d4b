"""Every activity is safe to run twice: a worker that runs each activity twice (as a retry after a lost
answer would) gives the same answers and leaves exactly what a normal run leaves."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import httpx
import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from api.app import create_app
from launcher.worker import build_worker
from tests.integration.conftest import Api, make_network, settings_for
from tests.integration.test_replay import run_path

pytestmark = pytest.mark.integration
QUEUE = "nodal-twice"


class Twice(Interceptor):
    """Runs every activity twice: one after the other (a retry after a lost answer), or both at once
    (``concurrent``: a retry racing an attempt that is still running)."""

    def __init__(self, concurrent: bool = False):
        self.runs: list[str] = []
        self.different: list[tuple[str, Any, Any]] = []
        self.concurrent = concurrent

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outer = self

        class Run(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                name = activity.info().activity_type
                outer.runs.append(name)
                if outer.concurrent:
                    # Either may lose the race and fail (to be retried, as Temporal would): one must succeed.
                    results = await asyncio.gather(self.next.execute_activity(input),
                                                   self.next.execute_activity(input), return_exceptions=True)
                    ok = [r for r in results if not isinstance(r, BaseException)]
                    if not ok:
                        raise results[0]
                    return ok[0]
                first = await self.next.execute_activity(input)
                second = await self.next.execute_activity(input)
                conv = pydantic_data_converter.payload_converter
                if conv.to_payloads([first]) != conv.to_payloads([second]):
                    outer.different.append((name, first, second))
                return first

        return Run(next)


async def test_every_activity_run_twice_changes_nothing_more(temporal_env, db, pg_url):
    twice = Twice()
    settings = settings_for(pg_url, task_queue=QUEUE)
    worker = build_worker(temporal_env.client, settings, db, interceptors=[twice])
    running = asyncio.create_task(worker.run())
    app = create_app(settings, db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal", timeout=60) as c:
            api = Api(c)
            net = await make_network(api)
            ids = await run_path("return", api, temporal_env, settings, net)
            order = await api.ok("GET", f"/orders/{ids[0]}")
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
    oid = ids[0]
    ran = set(twice.runs)
    for name in ("order.capture", "routing.plan", "inventory.reserve", "payments.call", "notify.send",
                 "read_model.record_order", "read_model.record_fulfillment", "inventory.commit", "inventory.consume",
                 "carriers.label", "carriers.return_label", "inventory.restock"):
        assert name in ran, f"{name} was not exercised"
    assert not twice.different, [(n, a, b) for n, a, b in twice.different][:3]

    # What a single run leaves (tests/integration/test_lifecycle.py): no more.
    assert sorted(p["kind"] for p in order["payments"]) == ["authorization", "capture", "refund"]
    async with db.engine.connect() as conn:
        ledger = (await conn.execute(text(
            "SELECT reason, SUM(on_hand_delta) AS oh, SUM(reserved_delta) AS rd, COUNT(*) AS n FROM inventory_ledger"
            " WHERE order_id = :o GROUP BY reason ORDER BY reason"), {"o": oid})).all()
        sent = (await conn.execute(text(
            "SELECT response->>'event' AS e, COUNT(*) AS n FROM adapter_calls WHERE system = 'notifications'"
            " AND response->>'order_id' = :o GROUP BY 1"), {"o": oid})).all()
        calls = (await conn.execute(text(
            "SELECT system, COUNT(*) AS n FROM adapter_calls WHERE idempotency_key LIKE :o GROUP BY 1"),
            {"o": f"%{oid}%"})).all()
        positions = (await conn.execute(text(
            "SELECT sku, on_hand, reserved FROM inventory_positions WHERE node_id = :n ORDER BY sku"),
            {"n": net.node("DC-N")})).all()
    assert [(r.reason, r.oh, r.rd) for r in ledger] == [("commit", 0, 0), ("reserve", 0, 3), ("return_restock", 1, 0),
                                                        ("ship", -3, -3)]
    assert dict((r.e, r.n) for r in sent) == {"confirmed": 1, "released": 1, "shipped": 1, "delivered": 1,
                                              "refunded": 1}
    assert dict((r.system, r.n) for r in calls) == {"payments": 3, "carriers": 2, "notifications": 5}
    assert [(r.sku.split("-")[-1], r.on_hand, r.reserved) for r in positions] == [
        ("SKU1", 9, 0), ("SKU2", 9, 0), ("SKU3", 10, 0)]


# The paths the return path above does not take, where an activity repeated could do harm twice: a cancel
# (void, release), a reroute and a short pick (release and reserve again), a decline, a checkout hold taken
# over, a backorder sourced from supply.
PATHS = ("cancel", "reroute", "short_pick", "payment_decline", "hold", "backorder")


async def _outcome(api: Api, db, oid: str) -> tuple:
    """What an order left, with the network's prefix taken out: status, payments, notifications, adapter calls,
    ledger movements and reservations, by kind."""
    order = await api.ok("GET", f"/orders/{oid}")
    async with db.engine.connect() as conn:
        ledger = sorted(tuple(r) for r in (await conn.execute(text(
            "SELECT reason, SUM(on_hand_delta), SUM(reserved_delta), COUNT(*) FROM inventory_ledger WHERE order_id = :o"
            " GROUP BY reason"), {"o": oid})).all())
        calls = sorted(tuple(r) for r in (await conn.execute(text(
            "SELECT system, COUNT(*) FROM adapter_calls WHERE idempotency_key LIKE :o GROUP BY 1"),
            {"o": f"%{oid}%"})).all())
        reservations = sorted(tuple(r) for r in (await conn.execute(text(
            "SELECT status, SUM(qty), COUNT(*) FROM reservations WHERE order_id = :o GROUP BY 1"), {"o": oid})).all())
    return (order["status"], sorted((p["kind"], p["amount"]) for p in order["payments"]),
            sorted(l["status"] for l in order["lines"]), ledger, calls, reservations)


async def _run_paths(temporal_env, db, pg_url, queue: str, interceptor: Optional[Twice]) -> dict[str, tuple]:
    settings = settings_for(pg_url, task_queue=queue)
    worker = build_worker(temporal_env.client, settings, db, interceptors=[interceptor] if interceptor else [])
    running = asyncio.create_task(worker.run())
    app = create_app(settings, db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    out = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal", timeout=60) as c:
            api = Api(c)
            # One at a time: a plan lists every node it looked at, and another path's new network would make a
            # repeated plan differ.
            for path in PATHS:
                ids = await run_path(path, api, temporal_env, settings, db=db)
                await temporal_env.client.get_workflow_handle(ids[0]).result()
                out[path] = await _outcome(api, db, ids[0])
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
    return out


_ONCE: dict[str, dict[str, tuple]] = {}  # every path run once, plainly: the same yardstick for both ways


@pytest.mark.parametrize("concurrent", [False, True], ids=["one_after_the_other", "at_once"])
async def test_every_path_with_each_activity_run_twice_ends_as_a_single_run(temporal_env, db, pg_url, concurrent):
    if "once" not in _ONCE:
        _ONCE["once"] = await _run_paths(temporal_env, db, pg_url, f"{QUEUE}-once", None)
    once = _ONCE["once"]
    twice = Twice(concurrent=concurrent)
    doubled = await _run_paths(temporal_env, db, pg_url, f"{QUEUE}-paths-{concurrent}", twice)
    assert not twice.different, [(n, a, b) for n, a, b in twice.different][:3]
    for path in PATHS:
        assert doubled[path] == once[path], (path, once[path], doubled[path])
    assert {"payments.call", "inventory.reserve", "notify.send", "read_model.record_order"} <= set(twice.runs)
