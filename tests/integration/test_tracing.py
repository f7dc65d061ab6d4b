"""Traces (OTEL_ variables; off by default): one order placed through the API is one connected trace, from the HTTP
request through the Temporal client, the order workflow and its activities down to their SQL statements."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from nodal import telemetry
from nodal.db import Database
from tests.integration.conftest import make_network, own_stack
from tests.integration.flow import place

pytestmark = pytest.mark.integration


async def test_tracing_is_off_by_default():
    assert not telemetry.wanted() and not telemetry.tracing()
    assert telemetry.client_interceptors() == []


async def test_one_order_is_one_connected_trace(temporal_env, pg_url, db):  # db: the admin key is in
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    telemetry.start_tracing("nodal-test", exporter=exporter, batch=False)
    traced = Database(pg_url)  # made while tracing: its statements are spans
    try:
        env_client = temporal_env.client
        client = await Client.connect(env_client.service_client.config.target_host, namespace=env_client.namespace,
                                      data_converter=env_client.data_converter,
                                      interceptors=telemetry.client_interceptors())
        async with own_stack(temporal_env, traced, pg_url, "nodal-tracing", client=client) as api:
            net = await make_network(api)
            exporter.clear()
            order_id = (await place(api, net, [("SKU1", 1)]))["order_id"]
        spans = exporter.get_finished_spans()
    finally:
        telemetry.stop_tracing()
        await traced.dispose()

    [request] = [s for s in spans if s.name == "POST /orders" and s.kind.name == "SERVER"]
    trace = [s for s in spans if s.context.trace_id == request.context.trace_id]
    names = {s.name for s in trace}
    assert any(n.startswith("StartWorkflow:Order") or n.startswith("StartUpdateWithStartWorkflow:") for n in names), names
    assert "RunWorkflow:Order" in names, names
    assert {"StartActivity:order.capture", "RunActivity:order.capture", "RunActivity:read_model.record_order"} <= names, names
    sql = [s for s in trace if (s.attributes or {}).get("db.system") == "postgresql"]
    assert sql, "no SQL statement in the trace"
    # Connected: every span but the request has its parent in the same trace.
    ids = {s.context.span_id for s in trace}
    orphans = [s.name for s in trace if s is not request and (s.parent is None or s.parent.span_id not in ids)]
    assert not orphans, orphans
    # And the order's spans are in this trace only.
    elsewhere = [s.name for s in spans if (s.attributes or {}).get("temporalWorkflowID") == order_id
                 and s.context.trace_id != request.context.trace_id]
    assert not elsewhere, elsewhere
    print(f"\none order: {len(trace)} spans in one trace ({len(sql)} SQL statements), e.g. {sorted(names)[:8]}")
