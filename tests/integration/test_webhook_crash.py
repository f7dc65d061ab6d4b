"""A SIGKILL of the worker and of the API while events are being delivered loses none: the outbox is written with
the state change, the deliveries are rows, and the delivery process is a Temporal activity another worker takes
over. Each event arrives (at least once; once after dedupe by webhook-id), in order per order."""

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
from tests.integration.receiver import free_port, serving, until

pytestmark = pytest.mark.integration
QUEUE = "nodal-webhook-crash"


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


async def test_sigkill_of_worker_and_api_mid_delivery_loses_no_event(temporal_env, db, pg_url):
    def slow(_id: str, _n: int) -> tuple[int, float]:
        return 200, 0.05  # deliveries take a while: some are always in flight when the kill comes

    env = env_for(temporal_env, pg_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker, server = start(env, "worker"), start(env, "api", "--port", str(port))
    try:
        await api_up(url)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http, serving(slow) as receiver:
            api = Api(http)
            net = await make_network(api, stock={"DC-N": {"SKU1": 100}})
            hook = await api.ok("PUT", "/webhooks/crash-test", json={"url": receiver.url, "events": ["*"],
                                                                     "channel": net.channel})
            partner = await api.key("partner", node_id=net.node("DC-N"))
            orders = [(await place(api, net, [("SKU1", 1)]))["order_id"] for _ in range(8)]
            windows = SimpleNamespace(remorse_window=timedelta(seconds=2))
            await asyncio.gather(*(release(api, temporal_env, oid, windows) for oid in orders))
            fulfillments = [await fulfillment(api, oid, net.node("DC-N")) for oid in orders]
            for f in fulfillments:
                await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=partner)
            # Events in flight: kill both, mid-delivery.
            await until(lambda: len(receiver.got) >= 10, 30, "deliveries under way")
            kill(worker)
            kill(server)
            delivered_before = len(receiver.unique())
            worker, server = start(env, "worker"), start(env, "api", "--port", str(port))
            await api_up(url)
            for f in fulfillments:
                for step in ("pick", "pack", "ship", "deliver"):
                    body = {"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]} \
                        if step == "pick" else None
                    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=partner, json=body)
            for oid in orders:
                await order_status(api, oid, "delivered")
            async with db.engine.connect() as conn:
                outbox = {oid: [r[0] for r in await conn.execute(text(
                    "SELECT id FROM events WHERE order_id = :o ORDER BY seq"), {"o": oid})] for oid in orders}
            want = {i for ids in outbox.values() for i in ids}
            await until(lambda: set(receiver.unique()) >= want, 90, "every event after the crash")
            await api.ok("DELETE", f"/webhooks/{hook['name']}")
    finally:
        kill(worker)
        kill(server)
    unique = list(receiver.unique())
    for oid, ids in outbox.items():  # in order per order, after dedupe
        assert [i for i in unique if i in set(ids)] == ids
    print(f"\n{len(want)} events of 8 orders: {delivered_before} delivered before the kill, all {len(want)} after; "
          f"{len(receiver.got) - len(unique)} duplicate deliveries (deduped by webhook-id)")
