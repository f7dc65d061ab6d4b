"""A DC's wave against one-by-one releases, on one fresh stack.

Releases spread over the placing of orders cannot be timed as one release, so both sides are released at one
instant, a wave of the DC (calendar.waves, a couple of minutes ahead; policy.release: wave). Baseline: 200
single-line orders; then 200 orders of 25 lines (5,000 lines). Each is timed from its wave to every fulfillment
released at the DC and the wave's pick list served (GET /fulfillments?node_id=&wave=). The goal: the 5,000-line
wave ≤ 2 × the 200 single-line orders.

    python bench/wave_bench.py [--orders 200] [--lines 25]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import ADMIN_KEY, Stack  # noqa: E402

ENV = {"NODAL_REMORSE_WINDOW": "2s", "NODAL_ADAPTER_LATENCY_MS": "5", "NODAL_LOG_JSON": "false",
       "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0", "NODAL_LOG_LEVEL": "WARNING",
       "NODAL_PLACE_TIMEOUT_S": "600", "NODAL_ACCEPT_TIMEOUT": "2h"}
SKUS = 300
CLIENTS = 8


class WaveBench:
    def __init__(self, stack: Stack, orders: int, lines: int):
        self.stack, self.orders, self.lines = stack, orders, lines
        self.p = "w" + uuid.uuid4().hex[:6]
        self.h = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.dc = f"{self.p}-DC"

    async def setup(self, http: httpx.AsyncClient) -> None:
        self.postal = f"{self.p}-60601"
        (await http.put(f"/nodes/{self.dc}", headers=self.h, json={
            "name": "DC", "type": "dc", "lat": 41.6, "lon": -88.1, "capabilities": ["ship"], "postal_code": self.postal,
            "processing_time": "1h", "cutoff_time": "23:59", "timezone": "UTC"})).raise_for_status()
        (await http.put("/service-areas", headers=self.h, json=[
            {"postal_code": self.postal, "lat": 41.88, "lon": -87.63, "nodes": []}])).raise_for_status()
        self.skus = [f"{self.p}-SKU{i:04d}" for i in range(SKUS)]
        for s in self.skus:
            (await http.put(f"/skus/{s}", headers=self.h, json={"name": s})).raise_for_status()
        (await http.put(f"/inventory/{self.dc}", headers=self.h, json={
            "as_of": "2026-01-01T00:00:00Z",
            "items": [{"sku": s, "on_hand": 10_000_000} for s in self.skus]})).raise_for_status()
        self.channel = f"{self.p}-b2b"
        key = (await http.post("/api-keys", headers=self.h, json={"role": "client", "channel": self.channel,
                                                                  "tier": "b2b"})).json()["key"]
        self.client = {"Authorization": f"Bearer {key}"}

    def body(self, name: str, n: int, lines: int, wave: bool) -> dict:
        return {"external_id": f"{self.p}-{name}-{n}", "channel": self.channel, "customer": {"id": f"dist-{n % 20}"},
                **({"policy": {"release": "wave"}} if wave else {}),
                "lines": [{"line_id": f"L{i + 1}", "sku": self.skus[(n * 11 + i) % SKUS], "qty": 1 + i % 4,
                           "unit_price": "3.50", "delivery": {"method": "ship_standard", "address": {
                               "postal_code": self.postal, "line1": f"{n} Dock Rd"}}} for i in range(lines)]}

    async def place(self, http: httpx.AsyncClient, bodies: list[dict]) -> list[str]:
        ids: list[str] = []
        queue = list(bodies)

        async def client() -> None:
            while queue:
                r = await http.post("/orders", headers=self.client, json=queue.pop())
                if r.status_code != 201:
                    raise RuntimeError(f"POST /orders: {r.status_code} {r.text[:300]}")
                ids.append(r.json()["order_id"])
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return ids

    async def released(self, http: httpx.AsyncClient, count: int, since: float, **query) -> float:
        """Seconds from ``since`` until ``count`` fulfillments of these orders are at the DC."""
        while True:
            r = await http.get("/fulfillments", headers=self.h, params={"node_id": self.dc, "limit": 1000, **query})
            mine = [f for f in r.json()["fulfillments"] if f["order_id"].startswith("ORD-") and
                    f["order_id"] in self.watch]
            if len(mine) >= count:
                return time.perf_counter() - since
            if time.perf_counter() - since > 900:
                raise RuntimeError(f"{len(mine)} of {count} fulfillments released after 15 min")
            await asyncio.sleep(0.1)

    async def wave(self, http: httpx.AsyncClient, name: str, lines: int) -> dict:
        at = (datetime.now(timezone.utc) + timedelta(minutes=2)).replace(second=0, microsecond=0)
        (await http.patch(f"/nodes/{self.dc}", headers=self.h,
                          json={"calendar": {"waves": [at.strftime("%H:%M")]}})).raise_for_status()
        t0 = time.perf_counter()
        self.watch = set(await self.place(http, [self.body(name, n, lines, True) for n in range(self.orders)]))
        placed = time.perf_counter() - t0
        left = (at - datetime.now(timezone.utc)).total_seconds()
        if left < 0:
            raise RuntimeError("placing the wave's orders took past the wave: give it more minutes")
        await asyncio.sleep(left)
        start = time.perf_counter()
        released = await self.released(http, self.orders, start, wave=at.isoformat())
        r = await http.get("/fulfillments", headers=self.h,
                           params={"node_id": self.dc, "wave": at.isoformat(), "limit": 1000})
        picks = r.json()["pick_list"]
        return {"placed_s": placed, "released_s": released, "served_s": time.perf_counter() - start,
                "pick_skus": len(picks), "pick_units": sum(p["qty"] for p in picks)}

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=900) as http:
            await self.setup(http)
            return {"single": await self.wave(http, "one", 1), "many": await self.wave(http, "many", self.lines)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--lines", type=int, default=25)
    args = ap.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="nodal-wave-")), env=ENV)
    await asyncio.to_thread(stack.start)
    try:
        r = await WaveBench(stack, args.orders, args.lines).run()
    finally:
        await asyncio.to_thread(stack.stop)
    for key, lines in (("single", 1), ("many", args.lines)):
        w = r[key]
        print(f"a wave of {args.orders} orders × {lines} line(s) (placed in {w['placed_s']:.1f} s): released"
              f" {w['released_s']:.1f} s after the wave, its pick list ({w['pick_skus']} SKUs, {w['pick_units']}"
              f" units) served {w['served_s']:.1f} s after it")
    print(f"  ratio {args.orders * args.lines} lines / {args.orders} single-line orders:"
          f" {r['many']['served_s'] / r['single']['served_s']:.2f} (goal ≤ 2)")


if __name__ == "__main__":
    asyncio.run(main())
