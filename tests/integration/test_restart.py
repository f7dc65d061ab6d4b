"""A worker killed mid-order loses nothing: the next worker picks the order up where it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from tests.integration.conftest import Api, make_network, settings_for
from tests.integration.flow import fulfillment, order_status, place, release

pytestmark = pytest.mark.integration
QUEUE = "nodal-restart-test"


def start_worker(temporal_env, pg_url: str) -> subprocess.Popen:
    env = {**os.environ, "NODAL_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
           "NODAL_DATABASE_URL": pg_url, "NODAL_TASK_QUEUE": QUEUE, "NODAL_ADAPTER_LATENCY_MS": "1",
           "NODAL_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def test_worker_killed_mid_order_loses_nothing(temporal_env, db, pg_url):
    settings = settings_for(pg_url, task_queue=QUEUE)
    app = create_app(settings, db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal", timeout=90) as c:
        api = Api(c)
        net = await make_network(api)
        worker = start_worker(temporal_env, pg_url)
        try:
            oid = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
            kill(worker)
            worker = start_worker(temporal_env, pg_url)
            await release(api, temporal_env, oid, settings)
            f = await fulfillment(api, oid, net.node("DC-N"))
            key = await api.key("partner", node_id=net.node("DC-N"))
            fid = f["fulfillment_id"]
            await api.ok("POST", f"/fulfillments/{fid}/accept", key=key)
            await api.ok("POST", f"/fulfillments/{fid}/pick", key=key,
                         json={"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]})
            kill(worker)
            worker = start_worker(temporal_env, pg_url)
            for step in ("pack", "ship"):
                await api.ok("POST", f"/fulfillments/{fid}/{step}", key=key)
            kill(worker)
            worker = start_worker(temporal_env, pg_url)
            await api.ok("POST", f"/fulfillments/{fid}/deliver", key=key)
            order = await order_status(api, oid, "delivered")
        finally:
            kill(worker)
    assert [p["kind"] for p in order["payments"]].count("capture") == 1
    assert [p["kind"] for p in order["payments"]].count("authorization") == 1
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT sku, on_hand, reserved FROM inventory_positions WHERE node_id = :n ORDER BY sku"),
            {"n": net.node("DC-N")})).all()
        ledger = (await conn.execute(text(
            "SELECT reason, SUM(on_hand_delta) AS oh, SUM(reserved_delta) AS rd FROM inventory_ledger"
            " WHERE order_id = :o GROUP BY reason ORDER BY reason"), {"o": oid})).all()
    assert [(r.sku.split("-")[-1], r.on_hand, r.reserved) for r in rows] == [("SKU1", 8, 0), ("SKU2", 9, 0), ("SKU3", 10, 0)]
    assert [(r.reason, r.oh, r.rd) for r in ledger] == [("commit", 0, 0), ("reserve", 0, 3), ("ship", -3, -3)]
