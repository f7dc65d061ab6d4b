"""Sustained order load through the API, against the same server's minimal workflow rate.

A fresh stack (bench/stack.py: PostgreSQL, Temporal dev server, N workers, the API, all processes).
First the baselines: a burst of minimal one-activity workflows on this server, run by a worker in this
process, and one client's round trips of a minimal update-with-start (a workflow whose Update answers at
once). Then one client places orders one after another (the latency of POST /orders without queueing,
against that round trip). Then customers place orders through the API for --seconds (closed loop,
--clients at once) while a simulated partner accepts, picks, packs, ships and delivers every fulfillment
released to its nodes. Reported: orders/s from create to released (the fulfillment handed to its node) as
a ratio to the baseline, API latency (p50/p99 of order placement and of partner milestones), worker
memory, and with several workers how the activities and workflow tasks spread across them.

    python bench/load_bench.py --workers 1 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio import activity, workflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import ADMIN_KEY, Stack  # noqa: E402

ENV = {"NODAL_REMORSE_WINDOW": "1s", "NODAL_RETURN_WINDOW": "5s", "NODAL_ADAPTER_LATENCY_MS": "5",
       "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0", "NODAL_LOG_LEVEL": "WARNING"}
NODES = {"DC-A": (41.60, -88.10), "DC-B": (39.10, -94.58), "DC-C": (32.78, -96.80), "DC-D": (40.71, -74.0)}


@activity.defn(name="bench.noop")
async def noop(x: int) -> int:
    return x


@workflow.defn(name="BenchMinimal", sandboxed=False)
class Minimal:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity("bench.noop", x, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn(name="BenchUpdateWithStart", sandboxed=False)
class MinimalUpdate:
    def __init__(self) -> None:
        self.answered = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.answered)

    @workflow.update
    async def ready(self) -> int:
        self.answered = True
        return 1


async def update_with_start_ms(stack: Stack, n: int) -> list[float]:
    """One client's round trips of a minimal update-with-start on this server, one after another (what POST
    /orders does at its core: start the order and wait for its first answer)."""
    from temporalio.client import Client, WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.worker import Worker

    client = await Client.connect(stack.temporal_address)
    queue = f"bench-uws-{uuid.uuid4().hex[:6]}"
    took = []
    async with Worker(client, task_queue=queue, workflows=[MinimalUpdate]):
        for i in range(n):
            t = time.perf_counter()
            start = WithStartWorkflowOperation(MinimalUpdate.run, id=f"{queue}-{i}", task_queue=queue,
                                               id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
            await client.execute_update_with_start_workflow(MinimalUpdate.ready, start_workflow_operation=start)
            took.append(time.perf_counter() - t)
    return took[2:]  # the first calls warm the connection and the worker


async def baseline(stack: Stack, n: int) -> float:
    """Minimal one-activity workflows per second on this server (started together, all awaited)."""
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(stack.temporal_address)
    queue = f"bench-minimal-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[Minimal], activities=[noop]):
        started = time.perf_counter()
        handles = await asyncio.gather(*(client.start_workflow(Minimal.run, i, id=f"{queue}-{i}", task_queue=queue)
                                         for i in range(n)))
        await asyncio.gather(*(h.result() for h in handles))
        return n / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def stack_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each part of the stack (PostgreSQL: the postmaster's children) and of this bench."""
    out = {"temporal server": cpu_seconds(stack.temporal.pid), "API": cpu_seconds(stack.api.pid),
           "workers": sum(cpu_seconds(w.pid) for w in stack.workers), "PostgreSQL": 0.0,
           "load generator": sum(os.times()[:2])}
    pgdata = str((stack.home / "pg").resolve())
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                procs[int(d.name)] = ((d / "cmdline").read_bytes(), int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]))
            except OSError:
                continue
    master = [pid for pid, (cmd, _) in procs.items() if pgdata.encode() in cmd and b"postgres" in cmd]
    for pid, (_, ppid) in procs.items():
        if pid in master or ppid in master:
            try:
                out["PostgreSQL"] += cpu_seconds(pid)
            except OSError:
                pass
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    def __init__(self, stack: Stack, clients: int, seconds: float):
        self.stack, self.clients, self.seconds = stack, clients, seconds
        self.prefix = "l" + uuid.uuid4().hex[:6]
        self.skus: list[str] = []
        self.place_ms: list[float] = []
        self.milestone_ms: list[float] = []
        self.order_ids: list[str] = []
        self.errors = Counter()
        self.peak_rss: dict[int, float] = {}
        self.cpu: dict[str, float] = {}

    async def call(self, http: httpx.AsyncClient, method: str, path: str, key: str, timings: list, **kw):
        t = time.perf_counter()
        r = await http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)
        timings.append(time.perf_counter() - t)
        if r.status_code >= 400:
            self.errors[f"{method} {path.split('/')[1]} {r.status_code}"] += 1
        return r

    async def setup(self, http: httpx.AsyncClient) -> None:
        p, h = self.prefix, {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.postal = f"{p}-60601"
        for name, (lat, lon) in NODES.items():
            await http.put(f"/nodes/{p}-{name}", headers=h, json={
                "name": name, "type": "dc", "lat": lat, "lon": lon, "capabilities": ["ship"], "postal_code": self.postal,
                "handling_cost": "0.50", "processing_time": "1h", "cutoff_time": "16:00", "timezone": "America/Chicago"})
        await http.put("/service-areas", headers=h, json=[{"postal_code": self.postal, "lat": 41.88, "lon": -87.63,
                                                           "nodes": []}])
        self.skus = [f"{p}-SKU{i}" for i in range(20)]
        for s in self.skus:
            await http.put(f"/skus/{s}", headers=h, json={"name": s, "weight_kg": 1.0})
        for name in NODES:
            await http.put(f"/inventory/{p}-{name}", headers=h, json={
                "as_of": "2026-01-01T00:00:00Z", "items": [{"sku": s, "on_hand": 100000} for s in self.skus]})
        self.channel = f"{p}-web"
        self.client_key = (await http.post("/api-keys", headers=h, json={"role": "client", "channel": self.channel})).json()["key"]
        self.partner_keys = {f"{p}-{n}": (await http.post("/api-keys", headers=h, json={
            "role": "partner", "node_id": f"{p}-{n}"})).json()["key"] for n in NODES}

    async def customer(self, http: httpx.AsyncClient, c: int, until: float) -> None:
        i = 0
        while time.monotonic() < until:
            i += 1
            body = {"external_id": f"{self.prefix}-{c}-{i}", "channel": self.channel, "customer": {"id": f"cust-{c}"},
                    "lines": [{"sku": self.skus[(c * 7 + i * 3 + k) % len(self.skus)], "qty": 1 + k, "unit_price": "19.90",
                               "delivery": {"method": "ship_standard", "address": {"postal_code": self.postal}}}
                              for k in range(1 + i % 3)]}
            r = await self.call(http, "POST", "/orders", self.client_key, self.place_ms, json=body)
            if r.status_code in (200, 201):
                self.order_ids.append(r.json()["order_id"])

    async def partner(self, http: httpx.AsyncClient, node: str, stop: asyncio.Event) -> None:
        key = self.partner_keys[node]
        steps = {"released": "accept", "accepted": "pick", "picked": "pack", "packed": "ship", "shipped": "deliver"}
        while not stop.is_set():
            work = []
            for status in steps:
                r = await http.get(f"/fulfillments?node_id={node}&status={status}&limit=200",
                                   headers={"Authorization": f"Bearer {key}"})
                work += r.json()["fulfillments"] if r.status_code == 200 else []
            for f in work:
                step = steps[f["status"]]
                body = {"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]} if step == "pick" else None
                await self.call(http, "POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key, self.milestone_ms, json=body)
            if not work:
                await asyncio.sleep(0.5)

    async def sample_memory(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for proc in self.stack.workers:
                if proc is not None and proc.poll() is None:
                    self.peak_rss[proc.pid] = max(self.peak_rss.get(proc.pid, 0.0), rss_mb(proc.pid))
            await asyncio.sleep(1)

    async def one_client(self, n: int) -> list[float]:
        """POST /orders from one client, one after another: its latency without queueing."""
        took: list[float] = []
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=60) as http:
            await self.setup(http)
            for i in range(n):
                body = {"external_id": f"{self.prefix}-single-{i}", "channel": self.channel,
                        "customer": {"id": "cust-single"},
                        "lines": [{"sku": self.skus[i % len(self.skus)], "qty": 1, "unit_price": "19.90",
                                   "delivery": {"method": "ship_standard", "address": {"postal_code": self.postal}}}]}
                r = await self.call(http, "POST", "/orders", self.client_key, took, json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"POST /orders: {r.status_code} {r.text[:300]}")
        return took[2:]

    async def run(self) -> dict:
        limits = httpx.Limits(max_connections=self.clients + len(NODES) + 4)
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=60, limits=limits) as http:
            if not self.skus:
                await self.setup(http)
            stop = asyncio.Event()
            background = [asyncio.create_task(self.partner(http, n, stop)) for n in self.partner_keys]
            background.append(asyncio.create_task(self.sample_memory(stop)))
            until = time.monotonic() + self.seconds
            cpu0 = stack_cpu(self.stack)
            await asyncio.gather(*(self.customer(http, c, until) for c in range(self.clients)))
            released = await self.wait_released()
            self.cpu = {k: v - cpu0[k] for k, v in stack_cpu(self.stack).items()}
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
        return released

    async def wait_released(self, timeout: float = 300) -> dict:
        """Create → released for every order, from the read model (orders.created_at, fulfillments.released_at)."""
        import psycopg

        url = self.stack.database_url
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT o.order_id, o.created_at, MIN(f.released_at) FROM orders o LEFT JOIN fulfillments f"
                    " ON f.order_id = o.order_id WHERE o.channel = %s AND o.external_id NOT LIKE %s GROUP BY 1, 2",
                    (self.channel, f"{self.prefix}-single-%")).fetchall()
            done = [r for r in rows if r[2] is not None]
            if len(done) >= len(self.order_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        first = min(r[1] for r in rows)
        last = max(r[2] for r in done)
        latency = sorted((r[2] - r[1]).total_seconds() for r in done)
        return {"orders": len(self.order_ids), "released": len(done), "rate": len(done) / (last - first).total_seconds(),
                "p50_s": statistics.median(latency), "p99_s": latency[int(len(latency) * 0.99) - 1] if latency else 0}

    async def spread(self) -> Counter:
        """Which worker ran the work: activity attempts and workflow tasks by worker identity (pid@host)."""
        from temporalio.client import Client

        client = await Client.connect(self.stack.temporal_address)
        by = Counter()
        for oid in self.order_ids[:300]:
            async for e in client.get_workflow_handle(oid).fetch_history_events():
                if e.HasField("activity_task_started_event_attributes"):
                    by[e.activity_task_started_event_attributes.identity.split("@")[0]] += 1
                elif e.HasField("workflow_task_started_event_attributes"):
                    by[e.workflow_task_started_event_attributes.identity.split("@")[0]] += 1
        return by


async def bench(workers: int, clients: int, seconds: float, minimal: int) -> list[str]:
    stack = Stack(Path(tempfile.mkdtemp(prefix=f"nodal-load-{workers}w-")), workers=workers, env=ENV)
    await asyncio.to_thread(stack.start)
    try:
        base = await baseline(stack, minimal)
        uws = await update_with_start_ms(stack, 42)
        load = Load(stack, clients, seconds)
        single = await load.one_client(42)
        res = await load.run()
        spread = await load.spread() if workers > 1 else Counter()
    finally:
        await asyncio.to_thread(stack.stop)
    uws_p50, single_p50 = statistics.median(uws) * 1000, statistics.median(single) * 1000
    out = [f"{workers} worker process(es):",
           f"  one client, one request at a time: POST /orders p50 {single_p50:.0f} ms (p90 {pct(single, 90):.0f} ms)"
           f" = {single_p50 / uws_p50:.1f} × a minimal update-with-start round trip on this server, p50 {uws_p50:.0f} ms"
           f" (p90 {pct(uws, 90):.0f} ms)",
           f"  {clients} clients for {seconds:.0f} s:",
           f"  minimal one-activity workflow (same server, same run): {base:6.1f} workflows/s",
           f"  orders create → released: {res['rate']:6.1f} orders/s = {res['rate'] / base:.2f} × the minimal workflow"
           f"  ({res['released']}/{res['orders']} released; create → released p50 {res['p50_s']:.1f} s, p99 {res['p99_s']:.1f} s,"
           f" of which 1 s is the remorse window)",
           f"  API latency: POST /orders p50 {pct(load.place_ms, 50):.0f} ms, p99 {pct(load.place_ms, 99):.0f} ms"
           f" ({len(load.place_ms)} calls); partner milestones p50 {pct(load.milestone_ms, 50):.0f} ms,"
           f" p99 {pct(load.milestone_ms, 99):.0f} ms ({len(load.milestone_ms)} calls)",
           "  worker memory (peak RSS): " + ", ".join(f"{mb:.0f} MB" for mb in load.peak_rss.values()),
           f"  CPU per order placed, create → released and the partner's milestones meanwhile ({os.cpu_count()} cores): "
           + ", ".join(f"{k} {v / max(res['orders'], 1) * 1000:.0f} ms" for k, v in load.cpu.items())]
    if spread:
        total = sum(spread.values())
        out.append("  work per worker process (activities + workflow tasks of 300 orders): " +
                   ", ".join(f"pid {pid}: {n} ({n / total:.0%})" for pid, n in sorted(spread.items())))
    if load.errors:
        out.append(f"  errors: {dict(load.errors)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, action="append")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--minimal", type=int, default=300, help="minimal workflows in the baseline burst")
    args = ap.parse_args()
    for w in args.workers or [1, 2]:
        print("\n".join(asyncio.run(bench(w, args.clients, args.seconds, args.minimal))), flush=True)


if __name__ == "__main__":
    main()
