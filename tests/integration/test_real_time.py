"""The same lifecycle on a dev server without time skipping, with short real windows.

Time skipping is experimental in the SDK; this guards that the windows work on a plain server too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from launcher.worker import build_worker
from tests.conftest import temporal_binary
from tests.integration.conftest import Api, make_network, settings_for
from tests.integration.flow import fulfillment, order_status, place, walk
from workflows.common import SEARCH_ATTRIBUTES
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.integration


async def test_lifecycle_with_real_timers(db, pg_url):
    settings = settings_for(pg_url, task_queue="nodal-realtime", remorse_window=timedelta(seconds=2),
                            accept_timeout=timedelta(seconds=3), return_window=timedelta(seconds=20))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter, ui=False, dev_server_log_level="error")
    worker = build_worker(env.client, settings, db)
    task = asyncio.create_task(worker.run())
    try:
        app = create_app(settings, db=db, temporal=env.client)
        app.state.db, app.state.temporal = db, env.client
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal",
                                     timeout=60) as c:
            api = Api(c)
            net = await make_network(api)
            oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
            # Nobody accepts at the nearest DC: after 3 s it moves to the far one.
            await fulfillment(api, oid, net.node("DC-N"), status="timed_out")
            f = await fulfillment(api, oid, net.node("DC-S"))
            await walk(api, f, await api.key("partner", node_id=net.node("DC-S")))
            await order_status(api, oid, "delivered")
            ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                               json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "unwanted"})
            await api.ok("POST", f"/returns/{ret['return_id']}/receive",
                         json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
            order = await order_status(api, oid, "returned")
            assert sorted(p["kind"] for p in order["payments"]) == ["authorization", "capture", "refund"]
            # The return window ends and the order workflow completes on its own. (Long enough that a busy
            # machine still asks for the return inside it; bounded waits, no race with the clock.)
            final = await asyncio.wait_for(env.client.get_workflow_handle_for(OrderWorkflow.run, oid).result(), timeout=90)
            assert final.status.value == "returned"
            found = [w.id async for w in env.client.list_workflows(f"OrderStatus = 'returned' AND WorkflowId = '{oid}'")]
            assert found == [oid]
    finally:
        await worker.shutdown()
        await asyncio.gather(task, return_exceptions=True)
        await env.shutdown()
