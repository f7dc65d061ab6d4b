"""The Temporal client every process uses: the API, the workers, the launcher and the tools."""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn, Optional

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from nodal.codec import data_converter
from nodal.settings import Settings
from nodal.telemetry import client_interceptors


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime whose metrics (the SDK's own, and what activities record through their metric meter) are
    served at ``address`` for Prometheus, named the Prometheus way (counters _total, durations in seconds)."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=address, counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True,
        histogram_bucket_overrides={name: SECONDS_BUCKETS for name in ("nodal_routing_plan", "nodal_adapter_call")})))


SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


def exit_without_teardown(code: int) -> NoReturn:
    """End a finished process that made a Temporal client: its exit handlers run (the embedded PostgreSQL's
    cleanup, logging), the interpreter's teardown does not. There the runtime's own threads can abort the process
    ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), turning a finished command into exit 134."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def connect(settings: Settings, lazy: bool = False, db=None, runtime: Optional[Runtime] = None) -> Client:
    """A client; ``lazy`` defers the connection to the first call (the API serves reads without Temporal). With
    the database, large payloads are kept there rather than in histories (nodal/payloads.py): every client and
    worker that starts, signals or runs orders passes it."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=data_converter(settings, db.engine if db is not None else None),
                                lazy=lazy, interceptors=client_interceptors(), runtime=runtime)
