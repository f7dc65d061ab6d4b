"""Order files against the API: 200 orders of 100 lines placed one by one through POST /orders by 8 clients (the
baseline), then the same orders (other external ids) as one CSV through POST /orders/import, on one fresh stack.

Printed: each way's time and rate; for the import both the file's answer (every order checked, recorded and its
workflow started) and the moment every imported order is promised (awaiting_release, as POST /orders answers),
so the ratio compares like with like. The goal: import ≥ 0.5 × the POST /orders rate.

    python bench/import_bench.py [--orders 200] [--lines 100] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.routes.imports import CSV_COLUMNS  # noqa: E402
from bench.stack import ADMIN_KEY, Stack  # noqa: E402

ENV = {"NODAL_REMORSE_WINDOW": "1h", "NODAL_ADAPTER_LATENCY_MS": "5", "NODAL_LOG_JSON": "false",
       "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0", "NODAL_LOG_LEVEL": "WARNING",
       "NODAL_MAX_BODY_BYTES": str(32 * 2**20), "NODAL_PLACE_TIMEOUT_S": "600"}
SKUS = 500


class ImportBench:
    def __init__(self, stack: Stack, orders: int, lines: int, clients: int):
        self.stack, self.orders, self.lines, self.clients = stack, orders, lines, clients
        self.p = "i" + uuid.uuid4().hex[:6]
        self.h = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def setup(self, http: httpx.AsyncClient) -> None:
        p = self.p
        self.postal = f"{p}-60601"
        for name, (lat, lon) in {"DC-A": (41.60, -88.10), "DC-B": (39.10, -94.58)}.items():
            (await http.put(f"/nodes/{p}-{name}", headers=self.h, json={
                "name": name, "type": "dc", "lat": lat, "lon": lon, "capabilities": ["ship"],
                "postal_code": self.postal, "processing_time": "1h", "cutoff_time": "16:00",
                "timezone": "America/Chicago"})).raise_for_status()
            self.skus = [f"{p}-SKU{i:04d}" for i in range(SKUS)]
        (await http.put("/service-areas", headers=self.h, json=[
            {"postal_code": self.postal, "lat": 41.88, "lon": -87.63, "nodes": []}])).raise_for_status()
        for s in self.skus:
            (await http.put(f"/skus/{s}", headers=self.h, json={"name": s, "pack_sizes": {"case": 12}})).raise_for_status()
        for name in ("DC-A", "DC-B"):
            (await http.put(f"/inventory/{p}-{name}", headers=self.h, json={
                "as_of": "2026-01-01T00:00:00Z",
                "items": [{"sku": s, "on_hand": 10_000_000} for s in self.skus]})).raise_for_status()
        self.channel = f"{p}-b2b"
        key = (await http.post("/api-keys", headers=self.h, json={"role": "client", "channel": self.channel,
                                                                  "tier": "b2b"})).json()["key"]
        self.client = {"Authorization": f"Bearer {key}"}

    def lines_of(self, n: int) -> list[tuple[str, int, str, str]]:
        """Order n's lines: (sku, qty, uom, unit price); every fourth line by the case."""
        return [(self.skus[(n * 7 + i) % SKUS], 1 + (n + i) % 9, "case" if i % 4 == 0 else "each",
                 "48.00" if i % 4 == 0 else "4.25") for i in range(self.lines)]

    def body(self, external_id: str, n: int) -> dict:
        return {"external_id": external_id, "channel": self.channel, "customer": {"id": f"dist-{n % 20}"},
                "lines": [{"line_id": f"L{i + 1}", "sku": sku, "qty": qty, "uom": uom, "unit_price": price,
                           "delivery": {"method": "ship_standard",
                                        "address": {"postal_code": self.postal, "line1": f"{n} Dock Rd"}}}
                          for i, (sku, qty, uom, price) in enumerate(self.lines_of(n))]}

    def csv(self, prefix: str) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(CSV_COLUMNS)
        for n in range(self.orders):
            for i, (sku, qty, uom, price) in enumerate(self.lines_of(n)):
                w.writerow([f"{prefix}-{n}", self.channel, f"dist-{n % 20}", f"L{i + 1}", sku, qty, uom, price,
                            self.postal, f"{n} Dock Rd", ""])
        return out.getvalue()

    async def one_by_one(self, http: httpx.AsyncClient) -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(self.orders):
            queue.put_nowait(n)

        async def client() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                r = await http.post("/orders", headers=self.client, json=self.body(f"{self.p}-POST-{n}", n))
                if r.status_code != 201 or r.json()["status"] != "awaiting_release":
                    raise RuntimeError(f"POST /orders: {r.status_code} {r.text[:300]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(self.clients)))
        return time.perf_counter() - t0

    async def imported(self, http: httpx.AsyncClient) -> tuple[float, float, int]:
        text = self.csv(f"{self.p}-CSV")
        t0 = time.perf_counter()
        r = await http.post("/orders/import", headers={**self.client, "Content-Type": "text/csv"},
                            content=text.encode())
        answered = time.perf_counter() - t0
        if r.status_code != 200 or r.json()["created"] != self.orders:
            raise RuntimeError(f"POST /orders/import: {r.status_code} {r.text[:500]}")
        ids = [o["order_id"] for o in r.json()["orders"]]
        waiting = set(ids)
        while waiting:  # every imported order promised: what POST /orders answers with
            page = await http.get(f"/orders?channel={self.channel}&status=awaiting_release&limit=500", headers=self.h)
            waiting -= {o["order_id"] for o in page.json()["orders"]}
            if time.perf_counter() - t0 > 1800:
                raise RuntimeError(f"{len(waiting)} imported orders not promised after 30 min")
            if waiting:
                await asyncio.sleep(0.2)
        return answered, time.perf_counter() - t0, len(text.encode())

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=1800) as http:
            await self.setup(http)
            posted = await self.one_by_one(http)
            answered, promised, size = await self.imported(http)
        return {"posted_s": posted, "answered_s": answered, "promised_s": promised, "csv_bytes": size}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="nodal-import-")), env=ENV)
    await asyncio.to_thread(stack.start)
    try:
        r = await ImportBench(stack, args.orders, args.lines, args.clients).run()
    finally:
        await asyncio.to_thread(stack.stop)
    n = args.orders
    print(f"{n} orders × {args.lines} lines")
    print(f"  POST /orders, {args.clients} clients: {r['posted_s']:.1f} s = {n / r['posted_s']:.2f} orders/s (promised)")
    print(f"  POST /orders/import, one CSV of {r['csv_bytes'] / 2**20:.2f} MB: answered in {r['answered_s']:.1f} s"
          f" = {n / r['answered_s']:.2f} orders/s; every order promised after {r['promised_s']:.1f} s"
          f" = {n / r['promised_s']:.2f} orders/s")
    print(f"  ratio import / POST: {r['posted_s'] / r['promised_s']:.2f} promised, {r['posted_s'] / r['answered_s']:.2f}"
          " answered (goal ≥ 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
