"""Storefront traffic on the availability index (issue 22): quotes and availability beside a trivial endpoint, in one
run, with the same client and concurrency; then latency at half the measured maximum rate, and how long a committed
reservation takes to show in the answers under that load.

    python bench/storefront_bench.py [--clients 50] [--workers 2] [--seconds 15] [--positions 1000000]

Data: POST /promise carts of 5 lines to 90 postal codes over 200 nodes × 500 SKUs (bench/promise_bench.py's
network); GET /availability for 5 SKUs over 500 nodes with ``--positions`` positions (bench/inventory_bench.py's).
Both networks live in one database, so every API process's index holds all of it (1.1 M positions by default).
wrk drives every line. The latency lines pace it (each connection waits clients / rate on average, at random, between requests: a fixed
offered rate, no queue of clients while answers come well within the wait; wrk2's corrected open loop is not
packaged here, so a stall longer than the wait is under-counted, as in any paced loop). The freshness probe is
aiohttp in a thread, a few requests at a time. Two control lines pace /livez, at half its own maximum and at the
quotes' rate: what this machine's queueing alone makes of a p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inventory_bench import _wrk, database, libpq, map_postal_codes, network, onboard, serve  # noqa: E402
from promise_bench import POSTAL_CODES, build  # noqa: E402

KEY = "bench-admin-R7w2Kx9PqT4mZc8VnL3s"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def _probe(base: str, url: str, stamp: int, sku: str, fresh: list[float], holds: int = 40) -> None:
    """Commit a hold on one SKU, then ask availability until an answer shows it (ms into ``fresh``); repeat."""
    import aiohttp

    await asyncio.sleep(1.0)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        for _ in range(holds):
            with psycopg.connect(libpq(url)) as conn:  # before the hold: what each node has now
                before = dict(conn.execute("SELECT node_id, GREATEST(on_hand - reserved - safety_stock, 0)"
                                           " FROM inventory_positions WHERE sku = %s", (sku,)).fetchall())
            async with http.post("/holds", data=json.dumps({
                    "channel": "web", "destination": {"postal_code": f"p{stamp}-00001"},
                    "lines": [{"sku": sku, "qty": 1}]})) as r:
                held = await r.json()
                assert r.status == 201, held
            committed = time.perf_counter()
            node = held["lines"][0]["node_id"]
            while True:
                async with http.get(f"/availability?skus={sku}") as r:
                    body = await r.json()
                got = next((n["available"] for n in body["skus"][0]["nodes"] if n["node_id"] == node), None)
                if got == before[node] - 1:
                    fresh.append((time.perf_counter() - committed) * 1000)
                    break
                assert time.perf_counter() - committed < 10, (got, before[node])
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--positions", type=int, default=1_000_000)
    args = ap.parse_args()
    url = database()
    stamp = int(time.time())
    started = time.perf_counter()
    nodes, skus = build(url, 200, 500, f"p{stamp}-")
    a_prefix = f"a{stamp}-"
    with psycopg.connect(libpq(url)) as conn:
        a_nodes, a_skus = network(conn, 500, args.positions // 500, a_prefix)
    onboard(url, a_nodes, a_skus, a_prefix)
    map_postal_codes(url, a_nodes, a_prefix)
    print(f"data loaded in {time.perf_counter() - started:.0f} s")
    rng = random.Random(11)
    carts = [json.dumps({"channel": "web", "destination": {"postal_code": f"p{stamp}-{rng.randrange(POSTAL_CODES):05d}"},
                         "lines": [{"sku": s, "qty": rng.randint(1, 3)} for s in rng.sample(skus, 5)]})
             for _ in range(500)]
    avail = [f"/availability?skus={','.join(rng.sample(a_skus, 5))}" for _ in range(500)]
    import httpx

    with serve(url, KEY, args.workers) as base:
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {KEY}",
                                                               "Content-Type": "application/json"}) as client:
            quote = client.post("/promise", content=carts[0]).json()
            assert quote["freshness"]["source"] == "index", quote["freshness"]
            _wrk(base, KEY, ["/promise"], args.clients, 5, carts)  # warm-up: tables and memo in every worker
            _wrk(base, KEY, avail, args.clients, 5)
            single = {}
            for name, method, paths, bodies in (("POST /promise", "POST", ["/promise"] * 300, carts[:300]),
                                                ("GET /availability", "GET", avail[:300], [None] * 300),
                                                ("GET /livez", "GET", ["/livez"] * 300, [None] * 300)):
                times = []
                for path, body in zip(paths, bodies):
                    t = time.perf_counter()
                    r = client.request(method, path, content=body)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                single[name] = statistics.median(times)
        runs = {"POST /promise": _wrk(base, KEY, ["/promise"], args.clients, args.seconds, carts),
                "GET /availability": _wrk(base, KEY, avail, args.clients, args.seconds),
                "GET /livez": _wrk(base, KEY, ["/livez"], args.clients, args.seconds)}
        # Then at half of each measured maximum, paced (wrk waits clients / rate between a connection's requests), with
        # a probe beside the quotes: a committed hold, then availability asked until an answer shows it.
        fresh: list[float] = []
        probe = threading.Thread(target=lambda: asyncio.run(_probe(base, url, stamp, skus[7], fresh)))
        probe.start()
        loops = {"POST /promise": _wrk(base, KEY, ["/promise"], args.clients, args.seconds, carts,
                                       rate=runs["POST /promise"][0] / 2)}
        probe.join()
        loops["GET /availability"] = _wrk(base, KEY, avail, args.clients, args.seconds,
                                          rate=runs["GET /availability"][0] / 2)
        # The controls: the trivial endpoint paced at half its own maximum (the goal's load, for a request that does
        # nothing: what queueing on these shared cores alone makes of a p99), and at the quotes' rate (no probe).
        controls = {"at half its maximum": _wrk(base, KEY, ["/livez"], args.clients, args.seconds,
                                                 rate=runs["GET /livez"][0] / 2),
                    "at the quotes' rate": _wrk(base, KEY, ["/livez"], args.clients, args.seconds,
                                                 rate=runs["POST /promise"][0] / 2)}
    print(f"{args.workers} API worker(s); wrk, {args.clients} connections, {args.seconds:.0f} s per line; "
          f"{len(nodes)} nodes × {len(skus)} SKUs for quotes, {len(a_nodes)} nodes × {len(a_skus)} SKUs for availability")
    livez = runs["GET /livez"][0]
    for name, (rps, p50, p99) in runs.items():
        print(f"  {name:20} {rps:8.0f} req/s ({rps / livez:.3f} × /livez)  closed-loop p50 {p50:6.1f} ms  "
              f"p99 {p99:6.1f} ms  single client p50 {single[name]:.2f} ms")
    for name, (rps, p50, p99) in loops.items():
        print(f"  paced {name} at {rps:.0f}/s (half the maximum): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
              f"= {p99 / single[name]:.1f} × single-client p50 (goal ≤ 5)")
    for name, (rps, p50, p99) in controls.items():
        print(f"  control: paced GET /livez {name}, {rps:.0f}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
              f"= {p99 / single['GET /livez']:.1f} × its single-client p50")
    if fresh:
        print(f"  reservation → availability answer under the quote load: p50 {pct(fresh, 0.5):.1f} ms, "
              f"p99 {pct(fresh, 0.99):.1f} ms, max {max(fresh):.1f} ms over {len(fresh)} holds (goal p99 ≤ 100 ms)")


if __name__ == "__main__":
    main()
