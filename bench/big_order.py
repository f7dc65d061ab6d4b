"""One B2B order of thousands of lines, from POST /orders to delivered, on a fresh stack of real processes.

A network of two DCs holding 1,000 SKUs; the order's lines cycle through them. A partner per DC walks every
fulfillment (accept, pick every line, pack, ship, deliver) as soon as it appears. Printed per size: the time to
place (POST /orders answered with the promise), to release (every fulfillment at its node), to deliver; the
workflows and their histories (events, bytes); the longest workflow task (started → completed in the
histories); the largest payload inline in a history and the largest kept in PostgreSQL instead
(nodal/payloads.py).

    python bench/big_order.py --lines 1000 --lines 5000 --lines 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import ADMIN_KEY, Stack  # noqa: E402

ENV = {"NODAL_REMORSE_WINDOW": "2s", "NODAL_RETURN_WINDOW": "5s", "NODAL_ADAPTER_LATENCY_MS": "5", "NODAL_LOG_JSON": "false",
       "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0", "NODAL_LOG_LEVEL": "INFO", "NODAL_MAX_BODY_BYTES": str(32 * 2**20),
       "NODAL_PLACE_TIMEOUT_S": "600"}
DCS = {"DC-A": (41.60, -88.10), "DC-B": (39.10, -94.58)}
SKUS = 1000


class BigOrder:
    def __init__(self, stack: Stack, lines: int, verbose: bool = False):
        self.stack, self.lines, self.verbose = stack, lines, verbose
        self.p = "b" + uuid.uuid4().hex[:6]
        self.h = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.tasks: list[tuple] = []  # workflow task durations: (seconds, workflow, event, before, after)

    async def setup(self, http: httpx.AsyncClient) -> None:
        p = self.p
        self.postal = f"{p}-60601"
        for name, (lat, lon) in DCS.items():
            r = await http.put(f"/nodes/{p}-{name}", headers=self.h, json={
                "name": name, "type": "dc", "lat": lat, "lon": lon, "capabilities": ["ship"], "postal_code": self.postal,
                "handling_cost": "0.50", "processing_time": "1h", "cutoff_time": "16:00", "timezone": "America/Chicago"})
            r.raise_for_status()
        (await http.put("/service-areas", headers=self.h, json=[
            {"postal_code": self.postal, "lat": 41.88, "lon": -87.63, "nodes": []}])).raise_for_status()
        self.skus = [f"{p}-SKU{i:04d}" for i in range(SKUS)]
        for s in self.skus:
            (await http.put(f"/skus/{s}", headers=self.h, json={"name": s, "weight_kg": 0.5})).raise_for_status()
        # A DC holds two thirds of the range: the order is served from both.
        for i, name in enumerate(DCS):
            items = [{"sku": s, "on_hand": 100000} for k, s in enumerate(self.skus) if k % 3 != i]
            (await http.put(f"/inventory/{p}-{name}", headers=self.h, json={
                "as_of": "2026-01-01T00:00:00Z", "items": items})).raise_for_status()
        self.channel = f"{p}-b2b"
        self.client_key = (await http.post("/api-keys", headers=self.h, json={
            "role": "client", "channel": self.channel, "tier": "b2b"})).json()["key"]
        self.partner_keys = {f"{p}-{n}": (await http.post("/api-keys", headers=self.h, json={
            "role": "partner", "node_id": f"{p}-{n}"})).json()["key"] for n in DCS}

    def body(self) -> dict:
        return {"external_id": f"{self.p}-PO-1", "channel": self.channel,
                "customer": {"id": "distributor-1", "tier": "b2b"},
                "lines": [{"line_id": f"L{i + 1}", "sku": self.skus[i % SKUS], "qty": 1 + i % 5, "unit_price": "4.20",
                           "delivery": {"method": "ship_standard",
                                        "address": {"postal_code": self.postal, "line1": "1 Dock Rd"}}}
                          for i in range(self.lines)]}

    async def partner(self, http: httpx.AsyncClient, node: str, stop: asyncio.Event) -> None:
        key = {"Authorization": f"Bearer {self.partner_keys[node]}"}
        steps = {"released": "accept", "accepted": "pick", "picked": "pack", "packed": "ship", "shipped": "deliver"}
        while not stop.is_set():
            work = []
            for status in steps:
                r = await http.get(f"/fulfillments?node_id={node}&status={status}&limit=1000", headers=key)
                work += r.json()["fulfillments"] if r.status_code == 200 else []
            for f in work:
                step = steps[f["status"]]
                body = {"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]} if step == "pick" else None
                r = await http.post(f"/fulfillments/{f['fulfillment_id']}/{step}", headers=key, json=body)
                if r.status_code >= 400 and r.status_code != 409:
                    print(f"  {step} {f['fulfillment_id']}: {r.status_code} {r.text[:200]}", flush=True)
            if not work:
                await asyncio.sleep(0.5)

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=900) as http:
            await self.setup(http)
            body = self.body()
            stop = asyncio.Event()
            partners = [asyncio.create_task(self.partner(http, n, stop)) for n in self.partner_keys]
            t0 = time.perf_counter()
            r = await http.post("/orders", headers={"Authorization": f"Bearer {self.client_key}"}, json=body)
            placed = time.perf_counter() - t0
            if r.status_code != 201:
                raise RuntimeError(f"POST /orders: {r.status_code} {r.text[:500]}")
            oid = r.json()["order_id"]
            released = delivered = None
            while True:
                o = (await http.get(f"/orders/{oid}", headers=self.h)).json()
                now = time.perf_counter() - t0
                if released is None and o["fulfillments"] and o["status"] not in ("awaiting_release", "received"):
                    released = now
                if o["status"] == "delivered":
                    delivered = now
                    break
                if now > 3600 or o["status"] in ("rejected", "cancelled"):
                    raise RuntimeError(f"order {oid} is {o['status']} after {now:.0f} s")
                await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*partners, return_exceptions=True)
            fulfillments = [f["fulfillment_id"] for f in o["fulfillments"]]
        histories = await self.histories([oid, *fulfillments])
        if self.verbose:
            from temporalio.api.enums.v1 import EventType

            def names(types):
                return ", ".join(EventType.Name(t).removeprefix("EVENT_TYPE_").lower() for t in types)

            for took, wid, event, before, after in sorted(self.tasks, reverse=True)[:8]:
                print(f"    workflow task {took * 1000:.0f} ms: {wid} event {event} (after {names(before)};"
                      f" then {names(after)})", flush=True)
        blobs = self.blobs(oid)
        return {"lines": self.lines, "bytes": len(r.request.content), "placed_s": placed, "released_s": released,
                "delivered_s": delivered, "fulfillments": len(fulfillments), **histories, **blobs}

    async def histories(self, workflow_ids: list[str]) -> dict:
        from temporalio.client import Client

        client = await Client.connect(self.stack.temporal_address)
        longest, inline, events, size, order_runs, order_events, order_bytes = 0.0, 0, 0, 0, 0, 0, 0
        for i, wid in enumerate(workflow_ids):
            run_id = None
            while True:  # every run of the workflow, back through continue-as-new
                history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
                started = {}
                for e in history.events:
                    if e.HasField("workflow_task_started_event_attributes"):
                        started[e.event_id] = e.event_time.ToDatetime()
                    elif e.HasField("workflow_task_completed_event_attributes"):
                        s = started.get(e.workflow_task_completed_event_attributes.started_event_id)
                        if s is not None:
                            took = (e.event_time.ToDatetime() - s).total_seconds()
                            longest = max(longest, took)
                            after = [x.event_type for x in history.events[e.event_id:e.event_id + 3]]
                            before = [x.event_type for x in history.events[max(e.event_id - 6, 0):e.event_id - 3]]
                            self.tasks.append((took, wid, e.event_id, before, after))
                    if e.HasField("workflow_task_failed_event_attributes") and self.verbose:
                        a = e.workflow_task_failed_event_attributes
                        print(f"    workflow task failed: {wid} event {e.event_id}: {a.failure.message[:300]}", flush=True)
                    inline = max(inline, e.ByteSize())
                n, b = len(history.events), sum(e.ByteSize() for e in history.events)
                events, size = events + n, size + b
                if i == 0:
                    order_runs, order_events, order_bytes = order_runs + 1, max(order_events, n), max(order_bytes, b)
                run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
                if not run_id:
                    break
        return {"workflows": len(workflow_ids), "events": events, "history_bytes": size, "order_runs": order_runs,
                "order_events": order_events, "order_history_bytes": order_bytes, "longest_task_s": longest,
                "largest_event_bytes": inline}

    def blobs(self, order_id: str) -> dict:
        import psycopg

        with psycopg.connect(self.stack.database_url) as conn:
            n, biggest, total = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(size), 0), COALESCE(SUM(size), 0) FROM payload_blobs"
                " WHERE workflow_id LIKE %s", (f"{order_id}%",)).fetchone()
            if self.verbose:  # what they are: the start of each of the largest
                import zlib

                from temporalio.api.common.v1 import Payload
                for wid, size, data in conn.execute(
                        "SELECT workflow_id, size, data FROM payload_blobs WHERE workflow_id LIKE %s"
                        " ORDER BY size DESC LIMIT 12", (f"{order_id}%",)).fetchall():
                    head = Payload.FromString(zlib.decompress(data)).data[:90].decode(errors="replace")
                    print(f"    stored payload {size / 2**20:.2f} MB of {wid}: {head}", flush=True)
        return {"stored_payloads": n, "largest_stored_bytes": biggest, "stored_bytes": total}


def mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


async def bench(lines: list[int], verbose: bool = False, workers: int = 1, history_limit: int = 0) -> list[str]:
    env = {**ENV, **({"NODAL_ORDER_HISTORY_LIMIT": str(history_limit)} if history_limit else {})}
    stack = Stack(Path(tempfile.mkdtemp(prefix="nodal-big-")), workers=workers, env=env)
    await asyncio.to_thread(stack.start)
    out = []
    try:
        for n in lines:
            r = await BigOrder(stack, n, verbose).run()
            out.append(
                f"{r['lines']:>6} lines ({mb(r['bytes'])} body): placed {r['placed_s']:.1f} s, released {r['released_s']:.1f} s,"
                f" delivered {r['delivered_s']:.1f} s; {r['fulfillments']} fulfillments; longest workflow task"
                f" {r['longest_task_s'] * 1000:.0f} ms; order history {r['order_runs']} run(s), largest {r['order_events']} events /"
                f" {mb(r['order_history_bytes'])},"
                f" all {r['workflows']} workflows {r['events']} events / {mb(r['history_bytes'])}; largest history event"
                f" {r['largest_event_bytes'] / 1024:.0f} KB; {r['stored_payloads']} payloads kept in PostgreSQL, largest"
                f" {mb(r['largest_stored_bytes'])}")
            print(out[-1], flush=True)
    finally:
        await asyncio.to_thread(stack.stop)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, action="append")
    ap.add_argument("--verbose", action="store_true", help="list the longest workflow tasks and stored payloads")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (default 1, as `nodal dev` runs)")
    ap.add_argument("--history-limit", type=int, default=0,
                    help="continue the order as new past this many events (NODAL_ORDER_HISTORY_LIMIT): measures the"
                         " continue-as-new of a large order's book")
    args = ap.parse_args()
    print(f"{args.workers} worker process(es)", flush=True)
    asyncio.run(bench(args.lines or [1000, 5000, 20000], args.verbose, args.workers, args.history_limit))


if __name__ == "__main__":
    main()
