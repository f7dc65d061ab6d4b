"""Metrics: the worker's Prometheus endpoint (NODAL_WORKER_METRICS_ADDRESS) has the Temporal SDK's metrics and the
business ones its activities record (orders by event and channel, cancellations by cause, fulfillments by node and
outcome, reroutes by cause, routing time, reservation conflicts); the API's /metrics has the quote time."""

from __future__ import annotations

import re

import httpx
import pytest

from nodal.client import metrics_runtime
from tests.integration.conftest import make_network, own_stack
from tests.integration.flow import place, release, fulfillment
from nodal.ports import free_port
from tests.integration.receiver import until

pytestmark = pytest.mark.integration


def value(scrape: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    total = 0.0
    for line in scrape.splitlines():
        m = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def test_the_worker_and_the_api_export_business_and_engine_metrics(temporal_env, db, pg_url):
    from temporalio.client import Client

    port = free_port()
    env_client = temporal_env.client
    client = await Client.connect(env_client.service_client.config.target_host, namespace=env_client.namespace,
                                  data_converter=env_client.data_converter, runtime=metrics_runtime(f"127.0.0.1:{port}"))
    async with own_stack(temporal_env, db, pg_url, "nodal-metrics", client=client) as api:
        net = await make_network(api)
        oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
        await release(api, temporal_env, oid, api.settings)
        f = await fulfillment(api, oid, net.node("DC-N"))
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/reject",
                     key=await api.key("partner", node_id=net.node("DC-N")), json={"reason": "flooded"})
        await fulfillment(api, oid, net.node("DC-S"))  # rerouted
        cancelled = (await place(api, net, [("SKU2", 1)]))["order_id"]
        await api.ok("POST", f"/orders/{cancelled}/cancel", key=net.client_key, json={"reason": "changed my mind"})
        await api.ok("POST", "/promise", key=net.client_key, json={
            "channel": net.channel, "destination": {"postal_code": net.postal_code},
            "lines": [{"sku": net.skus[2], "qty": 1}]})
        api_scrape = (await api.call("GET", "/metrics", key=None)).text
        async with httpx.AsyncClient() as plain:
            async def scraped() -> bool:
                nonlocal worker_scrape
                worker_scrape = (await plain.get(f"http://127.0.0.1:{port}/metrics")).text
                return value(worker_scrape, "nodal_order_events_total", event="cancelled", cause="requested") >= 1
            worker_scrape = ""
            await until(scraped, 20, "the cancellation counted")

    ch = net.channel
    assert value(worker_scrape, "nodal_order_events_total", event="received", channel=ch) == 2
    assert value(worker_scrape, "nodal_order_events_total", event="released", channel=ch) == 1
    assert value(worker_scrape, "nodal_fulfillment_events_total", outcome="rejected", node=net.node("DC-N")) == 1
    assert value(worker_scrape, "nodal_fulfillment_events_total", outcome="released", node=net.node("DC-S")) == 1
    assert value(worker_scrape, "nodal_reroutes_total", cause="rejected") >= 1
    assert value(worker_scrape, "nodal_adapter_calls_total", system="payments", outcome="ok") >= 2  # authorizations
    assert value(worker_scrape, "nodal_adapter_calls_total", system="notifications", outcome="ok") >= 2
    assert value(worker_scrape, "nodal_adapter_call_seconds_count", system="payments") >= 2
    assert value(worker_scrape, "nodal_routing_plan_seconds_count") >= 3, [l for l in worker_scrape.splitlines() if "routing" in l][:5]
    # The SDK's own, from the same endpoint.
    names = sorted({l.split("{")[0] for l in worker_scrape.splitlines() if l.startswith(("temporal", "nodal"))})
    assert value(worker_scrape, "temporal_workflow_task_execution_latency_seconds_count") > 0, names
    assert value(worker_scrape, "temporal_activity_execution_latency_seconds_count") > 0 or \
        value(worker_scrape, "temporal_local_activity_execution_latency_seconds_count") > 0
    assert value(api_scrape, "nodal_promise_quote_seconds_count", part="plans") >= 1

    # Every nodal_ series the Grafana dashboard asks for is one of these scrapes' (the SDK's temporal_ ones are its).
    import json
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana" / "nodal-dashboard.json").read_text())
    asked = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"\bnodal_\w+", t["expr"])}
    served = {l.split("{")[0].split(" ")[0] for l in (worker_scrape + api_scrape).splitlines() if l.startswith("nodal_")}
    # Series that show once something happened (a reservation conflict, a subscription): declared in the code.
    root = Path(__file__).parents[2]
    declared = "".join((root / f).read_text() for f in ("activities/metrics.py", "api/routes/ops.py", "adapters/base.py", "api/index.py"))
    missing = [m for m in asked - served if f'"{re.sub(r"_(total|bucket)$", "", m)}"' not in declared]
    assert asked and not missing, missing
