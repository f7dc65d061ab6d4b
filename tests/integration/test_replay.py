"""Determinism: every workflow path replays, today's runs and histories recorded by earlier code.

Histories under tests/replay/ were recorded from real runs of each path (happy, cancel, reroute,
short pick, return). A change to the workflows that would break an order already running fails
here. Record again (only when a change is meant to be incompatible and no old order can be running):

    NODAL_RECORD_HISTORIES=1 pytest tests/integration/test_replay.py
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Optional

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.integration.conftest import Api, Net, make_network
from tests.integration.flow import fulfillment, order_status, place, release, walk
from workflows.fulfillment import FulfillmentWorkflow
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.integration
HISTORIES = Path(__file__).resolve().parent.parent / "replay"
PATHS = ("happy", "cancel", "reroute", "short_pick", "return")


async def replay(histories: list[WorkflowHistory]) -> dict[str, str]:
    """Replay on today's workflow code; returns the failures by history name."""
    async def each():
        for h in histories:
            yield h

    replayer = Replayer(workflows=[OrderWorkflow, FulfillmentWorkflow], data_converter=pydantic_data_converter)
    failures = {}
    async with replayer.workflow_replay_iterator(each()) as results:
        async for r in results:
            if r.replay_failure:
                failures[r.history.workflow_id] = str(r.replay_failure)
    return failures


def recorded() -> list[WorkflowHistory]:
    return [WorkflowHistory.from_json(p.stem, json.loads(p.read_text()))
            for p in sorted(HISTORIES.glob("*.json"))]


async def test_recorded_histories_replay_on_todays_code():
    histories = recorded()
    paths = {h.workflow_id.split(".")[0] for h in histories}
    assert paths == set(PATHS), f"a path has no recorded history: {sorted(set(PATHS) - paths)}"
    failures = await replay(histories)
    assert not failures, failures


async def test_an_unguarded_change_breaks_recorded_orders(monkeypatch):
    """The control: taking the patched branch on old histories (as if the change had no patched guard) fails."""
    monkeypatch.setattr(workflow, "patched", lambda patch_id: True)
    happy = [h for h in recorded() if h.workflow_id.startswith("happy.order")]
    failures = await replay(happy)
    assert happy and set(failures) == {h.workflow_id for h in happy}
    assert all("nondetermin" in e.lower() for e in failures.values()), failures


async def _close(env, settings, order_id: str) -> None:
    await env.fast_forward(env.client.get_workflow_handle(order_id), settings.return_window + timedelta(days=1))


async def run_path(path: str, api: Api, env, settings, net: Optional[Net] = None) -> list[str]:
    """Drive one path to its end through the API; returns the workflow ids it ran (the order's first)."""
    net = net or await make_network(api)
    dc_n, dc_s = net.node("DC-N"), net.node("DC-S")
    key_n = await api.key("partner", node_id=dc_n)
    key_s = await api.key("partner", node_id=dc_s)
    oid = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
    if path == "cancel":
        await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "changed my mind"})
        await order_status(api, oid, "cancelled")
        return [oid]
    await release(api, env, oid, settings)
    f = await fulfillment(api, oid, dc_n)
    fids = [f["fulfillment_id"]]
    if path == "reroute":
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/reject", key=key_n, json={"reason": "damaged"})
        f2 = await fulfillment(api, oid, dc_s)
        fids.append(f2["fulfillment_id"])
        await walk(api, f2, key_s)
    elif path == "short_pick":
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/accept", key=key_n)
        picked = [{"line_id": l["line_id"], "qty": l["qty"] - (1 if l["line_id"] == "L1" else 0)} for l in f["lines"]]
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/pick", key=key_n, json={"lines": picked})
        f2 = await fulfillment(api, oid, dc_s)
        fids.append(f2["fulfillment_id"])
        for step in ("pack", "ship", "deliver"):
            await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=key_n)
        await walk(api, f2, key_s)
    else:
        await walk(api, f, key_n)
    await order_status(api, oid, "delivered")
    if path == "return":
        ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                           json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
        await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=key_n,
                     json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
        await order_status(api, oid, "partially_returned")
    await _close(env, settings, oid)
    return [oid, *fids]


async def test_every_path_replays_and_is_recorded(api: Api, temporal_env, settings):
    record = os.environ.get("NODAL_RECORD_HISTORIES") == "1"
    histories = []
    for path in PATHS:
        ids = await run_path(path, api, temporal_env, settings)
        for i, wid in enumerate(ids):
            handle = temporal_env.client.get_workflow_handle(wid)
            await handle.result()  # every path ends
            history = await handle.fetch_history()
            name = f"{path}.{'order' if i == 0 else f'fulfillment{i}'}"
            histories.append(WorkflowHistory(name, history.events))
            if name.endswith(".order") and path != "cancel":
                markers = [e.marker_recorded_event_attributes for e in history.events
                           if e.HasField("marker_recorded_event_attributes")]
                names = {m.marker_name for m in markers}
                assert {"core_patch", "core_local_activity"} <= names, "a new run takes the patched branches"
            if record:
                HISTORIES.mkdir(exist_ok=True)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
    failures = await replay(histories)
    assert not failures, failures
