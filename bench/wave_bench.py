"""A DC's wave against one-by-one releases, on one fresh stack.

Baseline: 200 single-line orders placed at once (remorse window 2 s) are released as their windows end: the
time from the last window's end to the last fulfillment at the DC. Then 200 orders of 25 lines (5,000 lines) ask
for waves (policy.release: wave) at a DC whose calendar has one wave a few minutes ahead: the time from the wave
to every fulfillment released at the DC and the wave's pick list served (GET /fulfillments?node_id=&wave=).
The goal: the wave ≤ 2 × the baseline.

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

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=900) as http:
            await self.setup(http)
            # Baseline: single-line orders, released as each remorse window ends.
            t0 = time.perf_counter()
            self.watch = set(await self.place(http, [self.body("one", n, 1, False) for n in range(self.orders)]))
            last_window_end = time.perf_counter() + 2.0  # the last order's window ends 2 s after it was placed
            baseline = await self.released(http, self.orders, last_window_end)
            placed_single = last_window_end - 2.0 - t0
            # The wave: a few minutes ahead (the DC's calendar is in UTC minutes), after every order is placed.
            at = (datetime.now(timezone.utc) + timedelta(minutes=3)).replace(second=0, microsecond=0)
            (await http.patch(f"/nodes/{self.dc}", headers=self.h,
                              json={"calendar": {"waves": [at.strftime("%H:%M")]}})).raise_for_status()
            t1 = time.perf_counter()
            self.watch = set(await self.place(http, [self.body("wave", n, self.lines, True)
                                                     for n in range(self.orders)]))
            placed_wave = time.perf_counter() - t1
            left = (at - datetime.now(timezone.utc)).total_seconds()
            if left < 0:
                raise RuntimeError("placing the wave's orders took past the wave: give it more minutes")
            await asyncio.sleep(left)
            start = time.perf_counter()
            wave_s = await self.released(http, self.orders, start, wave=at.isoformat())
            r = await http.get("/fulfillments", headers=self.h,
                               params={"node_id": self.dc, "wave": at.isoformat(), "limit": 1000})
            served = time.perf_counter() - start
            picks = r.json()["pick_list"]
        return {"baseline_s": baseline, "wave_released_s": wave_s, "wave_served_s": served,
                "pick_skus": len(picks), "pick_units": sum(p["qty"] for p in picks),
                "placed_single_s": placed_single, "placed_wave_s": placed_wave}


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
    print(f"{args.orders} single-line orders: released {r['baseline_s']:.1f} s after the last remorse window ended"
          f" (placed in {r['placed_single_s']:.1f} s)")
    print(f"a wave of {args.orders} × {args.lines} = {args.orders * args.lines} lines (placed in"
          f" {r['placed_wave_s']:.1f} s): released {r['wave_released_s']:.1f} s after the wave, pick list"
          f" ({r['pick_skus']} SKUs, {r['pick_units']} units) served {r['wave_served_s']:.1f} s after it")
    print(f"  ratio wave / single-line releases: {r['wave_served_s'] / r['baseline_s']:.2f} (goal ≤ 2)")


if __name__ == "__main__":
    asyncio.run(main())
