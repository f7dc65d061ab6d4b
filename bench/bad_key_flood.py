"""A flood of bad API keys against a good client: does it slow the good one down?

The API as production runs it (bench/inventory_bench.py serve: uvicorn, 1 worker) with its default limits.
A good client at 127.0.0.3 asks GET /nodes open-loop at --rate requests/s, first alone, then while
--flooders connections at 127.0.0.2 send random keys as fast as they can (closed loop). Printed: the good
client's latency p50/p99 alone and under the flood, and what the flood got (401: a key looked up in the
database; 429: stopped by the per-address limit before any lookup).

    python bench/bad_key_flood.py [--rate 20] [--seconds 10] [--flooders 32]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inventory_bench import database, serve  # noqa: E402

KEY = "bench-admin-R7w2Kx9PqT4mZc8VnL3s"


async def good_client(base: str, rate: float, seconds: float) -> list[float]:
    """Open loop: a request every 1/rate s whatever the answers take (latency, not queueing of our own)."""
    took: list[float] = []
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        async def one() -> None:
            t = time.perf_counter()
            r = await http.get("/nodes")
            took.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text

        tasks, start = [], time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return took


async def flood(base: str, connections: int, stop: asyncio.Event, got: Counter) -> None:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30,
                                 limits=httpx.Limits(max_connections=connections)) as http:
        async def one() -> None:
            while not stop.is_set():
                r = await http.get("/nodes", headers={"Authorization": f"Bearer {secrets.token_urlsafe(24)}"})
                got[r.status_code] += 1

        await asyncio.gather(*(one() for _ in range(connections)))


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def run(base: str, rate: float, seconds: float, flooders: int) -> list[str]:
    await good_client(base, rate, 2)  # warm up
    alone = await good_client(base, rate, seconds)
    stop, got = asyncio.Event(), Counter()
    flooding = asyncio.create_task(flood(base, flooders, stop, got))
    await asyncio.sleep(1)
    started = time.perf_counter()
    under = await good_client(base, rate, seconds)
    stop.set()
    await flooding
    took = time.perf_counter() - started + 1
    return [f"good client, GET /nodes open loop at {rate:g}/s for {seconds:g} s (from 127.0.0.3):",
            f"  alone:            p50 {pct(alone, 50):.1f} ms, p99 {pct(alone, 99):.1f} ms",
            f"  under the flood:  p50 {pct(under, 50):.1f} ms, p99 {pct(under, 99):.1f} ms",
            f"flood of random keys, {flooders} connections from 127.0.0.2: {sum(got.values()) / took:.0f} requests/s;"
            f" {got[401]} reached the key lookup (401), {got[429]} stopped by the per-address limit (429)"
            + (f", other {dict((k, v) for k, v in got.items() if k not in (401, 429))}" if set(got) - {401, 429} else "")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flooders", type=int, default=32)
    args = ap.parse_args()
    url = database()
    # The limits as shipped (serve() turns them off for throughput benchmarks).
    with serve(url, KEY, 1, env={"NODAL_RATE_LIMIT_PER_SECOND": "100", "NODAL_RATE_LIMIT_PER_ADDRESS": "1000"}) as base:
        print("\n".join(asyncio.run(run(base, args.rate, args.seconds, args.flooders))), flush=True)


if __name__ == "__main__":
    main()
