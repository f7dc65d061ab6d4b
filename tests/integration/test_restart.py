"""Crashes lose nothing. A worker killed mid-order: the next worker picks the order up where it was (its stock,
payments and ledger as if nothing happened). The worker and the API killed together while events are being
delivered: every event still arrives (at least once; once after dedupe by webhook-id), in order per order, since
the outbox is written with the state change, the deliveries are rows and the delivery process is a Temporal
activity another worker takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import text

from tests.integration.conftest import ADMIN_KEY, Api, make_network
from tests.integration.flow import fulfillment, order_status, place, release
from nodal.ports import free_port
from tests.integration.receiver import serving, until

pytestmark = pytest.mark.integration
QUEUE = "nodal-restart-test"
REMORSE = timedelta(seconds=2)


def env_for(temporal_env, pg_url: str) -> dict[str, str]:
    return {**os.environ, "NODAL_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "NODAL_DATABASE_URL": pg_url, "NODAL_TASK_QUEUE": QUEUE, "NODAL_ADAPTER_LATENCY_MS": "1",
            "NODAL_LOG_LEVEL": "WARNING", "NODAL_ADMIN_KEY": ADMIN_KEY, "NODAL_EVENT_HEARTBEAT": "2s",
            "NODAL_REMORSE_WINDOW": "2s", "NODAL_RATE_LIMIT_PER_SECOND": "0"}


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def api_up(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(300):
            try:
                if (await c.get(f"{url}/livez", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the API did not come up")


async def test_worker_and_api_killed_mid_order_and_mid_delivery_lose_nothing(temporal_env, db, pg_url):
    def slow(_id: str, _n: int) -> tuple[int, float]:
        return 200, 0.05  # deliveries take a while: some are in flight when the kill comes

    env = env_for(temporal_env, pg_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker, server = start(env, "worker"), start(env, "api", "--port", str(port))
    windows = SimpleNamespace(remorse_window=REMORSE)
    try:
        await api_up(url)
        async with httpx.AsyncClient(base_url=url, timeout=90) as http, serving(slow) as receiver:
            api = Api(http)
            net = await make_network(api)
            hook = await api.ok("PUT", "/webhooks/restart-test", json={"url": receiver.url, "events": ["*"],
                                                                       "channel": net.channel})
            dc = net.node("DC-N")
            partner = await api.key("partner", node_id=dc)
            first = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
            orders = [first] + [(await place(api, net, [("SKU3", 1)]))["order_id"] for _ in range(5)]
            kill(worker)  # mid-order: placed, in the remorse window
            worker = start(env, "worker")
            await asyncio.gather(*(release(api, temporal_env, oid, windows) for oid in orders))
            fs = [await fulfillment(api, oid, dc) for oid in orders]
            for f in fs:
                await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=partner)
                await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/pick", key=partner,
                             json={"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]})
            # Mid-delivery: events of every order are on their way to the receiver. Both go.
            await until(lambda: len(receiver.got) >= 10, 30, "deliveries under way")
            kill(worker)
            kill(server)
            before_kill = len(receiver.unique())
            worker, server = start(env, "worker"), start(env, "api", "--port", str(port))
            await api_up(url)

            async def steps(f: dict, *names: str) -> None:
                for step in names:
                    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=partner)
            # Side by side: each order's first task after a kill waits out the dead worker's sticky queue.
            await asyncio.gather(*(steps(f, "pack", "ship") for f in fs))
            kill(worker)  # mid-order again: shipped, not yet delivered
            worker = start(env, "worker")
            await asyncio.gather(*(steps(f, "deliver") for f in fs))
            order = await order_status(api, first, "delivered")
            for oid in orders[1:]:
                await order_status(api, oid, "delivered")
            async with db.engine.connect() as conn:
                outbox = {oid: [r[0] for r in await conn.execute(text(
                    "SELECT id FROM events WHERE order_id = :o ORDER BY seq"), {"o": oid})] for oid in orders}
            want = {i for ids in outbox.values() for i in ids}
            await until(lambda: set(receiver.unique()) >= want, 90, "every event after the kills")
            await api.ok("DELETE", f"/webhooks/{hook['name']}")
    finally:
        kill(worker)
        kill(server)

    # The order: charged once, its stock and ledger as if nothing had happened.
    assert [p["kind"] for p in order["payments"]].count("capture") == 1
    assert [p["kind"] for p in order["payments"]].count("authorization") == 1
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT sku, on_hand, reserved FROM inventory_positions WHERE node_id = :n ORDER BY sku"),
            {"n": dc})).all()
        ledger = (await conn.execute(text(
            "SELECT reason, SUM(on_hand_delta) AS oh, SUM(reserved_delta) AS rd FROM inventory_ledger"
            " WHERE order_id = :o GROUP BY reason ORDER BY reason"), {"o": first})).all()
    assert [(r.sku.split("-")[-1], r.on_hand, r.reserved) for r in rows] == [("SKU1", 8, 0), ("SKU2", 9, 0), ("SKU3", 5, 0)]
    assert [(r.reason, r.oh, r.rd) for r in ledger] == [("commit", 0, 0), ("reserve", 0, 3), ("ship", -3, -3)]
    # Every event, in order per order after dedupe.
    unique = list(receiver.unique())
    for oid, ids in outbox.items():
        assert [i for i in unique if i in set(ids)] == ids
    print(f"\n{len(want)} events of {len(orders)} orders: {before_kill} delivered before the worker and the API were "
          f"killed, all {len(want)} after; {len(receiver.got) - len(unique)} sent twice (deduped by webhook-id)")
