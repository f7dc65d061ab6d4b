"""POST /promise under load: a 5-line cart over a 200-node network, beside a trivial endpoint of the same app.

    python bench/promise_bench.py [--nodes 200] [--skus 500] [--clients 50] [--workers 2] [--seconds 15]

The API runs as production runs it (uvicorn workers, uvloop, no access log) on a fresh embedded PostgreSQL
(or NODAL_DATABASE_URL); wrk drives it closed-loop. Every quote plans all five methods: ship standard and
express and same day through the routing engine, pickup and curbside at the three nearest stores.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inventory_bench import _wrk, database, libpq, network, onboard, serve  # noqa: E402

POSTAL_CODES = 90


def build(url: str, nodes: int, skus: int, prefix: str) -> tuple[list[str], list[str]]:
    with psycopg.connect(libpq(url)) as conn:
        node_ids, sku_ids = network(conn, nodes, skus, prefix)
        # One store in three also hands over in store, offers curbside and same day, inside opening hours.
        conn.execute(
            "UPDATE nodes SET capabilities = '[\"ship\", \"pickup\", \"curbside\", \"same_day\"]',"
            " calendar = '{\"hours\": {\"open\": \"08:00\", \"close\": \"22:00\"}, \"same_day_cutoff\": \"20:00\"}'"
            " WHERE node_id LIKE %s AND type = 'store' AND hashtext(node_id) %% 3 = 0", (f"{prefix}%",))
        rng = random.Random(7)
        with conn.cursor().copy("COPY postal_codes (postal_code, lat, lon) FROM STDIN") as cp:
            for pc in range(POSTAL_CODES):
                cp.write_row((f"{prefix}{pc:05d}", 30 + rng.random() * 19, -120 + rng.random() * 49))
        stores = [n for i, n in enumerate(node_ids) if i % 10]
        with conn.cursor().copy("COPY service_areas (postal_code, node_id, priority) FROM STDIN") as cp:
            for pc in range(POSTAL_CODES):
                for k in range(5):
                    cp.write_row((f"{prefix}{pc:05d}", stores[(pc * 5 + k) % len(stores)], k + 1))
        conn.commit()
    onboard(url, node_ids, sku_ids, prefix)
    return node_ids, sku_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--skus", type=int, default=500)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    url = database()
    prefix = f"p{int(time.time())}-"
    nodes, skus = build(url, args.nodes, args.skus, prefix)
    rng = random.Random(11)
    carts = [json.dumps({"channel": "web", "destination": {"postal_code": f"{prefix}{rng.randrange(POSTAL_CODES):05d}"},
                         "lines": [{"sku": s, "qty": rng.randint(1, 3)} for s in rng.sample(skus, 5)]})
             for _ in range(500)]
    key = "bench-admin-R7w2Kx9PqT4mZc8VnL3s"
    with serve(url, key, args.workers) as base:
        import httpx

        sample = httpx.post(f"{base}/promise", content=carts[0], timeout=30,
                            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert sample.status_code == 200, sample.text
        quote = sample.json()
        _wrk(base, key, ["/promise"], args.clients, args.seconds, carts)  # warm-up: every worker's network memo
        # Then one client, one quote at a time: what a quote costs in the server, phase by phase (Server-Timing).
        phases: dict[str, list[float]] = {"whole request": [], "view": [], "plans": []}
        with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}",
                                                              "Content-Type": "application/json"}) as client:
            for body in carts[:300]:
                t = time.perf_counter()
                r = client.post("/promise", content=body)
                phases["whole request"].append((time.perf_counter() - t) * 1000)
                for part in r.headers["Server-Timing"].split(","):
                    name, dur = part.strip().split(";")[:2]
                    phases[name].append(float(dur.removeprefix("dur=")))
        runs = {name: _wrk(base, key, paths, args.clients, args.seconds, bodies) for name, paths, bodies in (
            ("POST /promise (5 lines)", ["/promise"], carts), ("GET /livez (trivial, same app)", ["/livez"], None))}
    print(f"POST /promise: 5-line carts over {len(nodes)} nodes × {len(skus)} SKUs; wrk, {args.clients} connections,"
          f" {args.workers} server worker(s), {args.seconds:.0f} s each (target p99 ≤ 50 ms)")
    print(f"  a quote: {len(quote['options'])} options "
          f"({', '.join(sorted({o['method'] for o in quote['options']}))}), "
          f"{len(quote['unavailable'])} unavailable")
    print("  one client, sequential (median ms): " + ", ".join(
        f"{name} {statistics.median(v):.2f}" for name, v in phases.items())
          + "  (view: network memo + live stock; plans: the routing engine per method)")
    for name, (rps, p50, p99) in runs.items():
        print(f"  {name:32} {rps:8.0f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    promise, trivial = runs["POST /promise (5 lines)"], runs["GET /livez (trivial, same app)"]
    print(f"  p99 POST /promise / p99 trivial: {promise[2] / trivial[2]:.1f}×;"
          f" throughput ratio {promise[0] / trivial[0]:.2f}")


if __name__ == "__main__":
    main()
