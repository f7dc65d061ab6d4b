"""Inventory benchmarks; every figure is printed beside a baseline measured in the same run, same database.

    python bench/inventory_bench.py reservations [--n 3000] [--concurrency 1 8]
    python bench/inventory_bench.py import [--positions 1000000]
    python bench/inventory_bench.py availability [--positions 1000000]
    python bench/inventory_bench.py http [--positions 1000000] [--clients 50] [--workers 2]

Uses NODAL_DATABASE_URL, or a fresh embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.inventory import reserve_request  # noqa: E402
from models.messages import FulfillmentAssignment, LineQty, ReserveRequest  # noqa: E402
from inventory.arithmetic import ATS_SQL  # noqa: E402
from inventory.bulk import import_csv  # noqa: E402
from nodal.db import Database, start_embedded_postgres, sqlalchemy_url  # noqa: E402
from nodal.migrate import upgrade  # noqa: E402


# As `nodal worker` runs it (no pool pre-ping); BENCH_PRE_PING=1 measures the API's pool setting.
PRE_PING = os.environ.get("BENCH_PRE_PING", "0") == "1"


def database() -> str:
    url = os.environ.get("NODAL_DATABASE_URL")
    if not url:
        url = start_embedded_postgres(Path(tempfile.mkdtemp(prefix="nodal-bench-")) / "pg", keep_running=False)
    upgrade(url)
    return url


def libpq(url: str) -> str:
    return sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def network(conn: psycopg.Connection, nodes: int, skus: int, prefix: str) -> tuple[list[str], list[str]]:
    node_ids = [f"{prefix}N{i:04d}" for i in range(nodes)]
    sku_ids = [f"{prefix}S{i:05d}" for i in range(skus)]
    with conn.cursor() as cur:
        with cur.copy("COPY nodes (node_id, name, type, lat, lon, postal_code, capabilities, enabled, handling_cost,"
                      " processing_time_minutes, cutoff_time, timezone, calendar) FROM STDIN") as cp:
            for i, n in enumerate(node_ids):
                cp.write_row((n, n, "dc" if i % 10 == 0 else "store", 30 + i % 20, -120 + i % 50, "", '["ship"]',
                              True, 0, 60, "15:00", "UTC", "{}"))
        with cur.copy("COPY skus (sku, name, weight_kg, oversized, hazmat, digital, ship_alone, allowed_node_types)"
                      " FROM STDIN") as cp:
            for s in sku_ids:
                cp.write_row((s, s, 1, False, False, False, False, "[]"))
    conn.commit()
    return node_ids, sku_ids


def onboard(url: str, nodes: list[str], skus: list[str], prefix: str) -> None:
    """Stock every node with every SKU the way a network is onboarded (`nodal inventory import` of a file
    written node by node), then a day of trade: one position in ten reserved (updated in place)."""
    path = Path(tempfile.mkdtemp()) / "positions.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "sku", "on_hand", "safety_stock"])
        w.writerows([n, s, 9, 1] for n in nodes for s in skus)
    import_csv(url, path)
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("UPDATE inventory_positions SET reserved = reserved + 1 WHERE sku LIKE %s"
                     " AND hashtext(node_id || sku) %% 10 = 0", (f"{prefix}%",))
        conn.commit()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE inventory_positions")  # what autovacuum does after a load like this


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


# ---------------------------------------------------------------- reservations
async def engine_reservations(url: str, positions: list[tuple[str, str]], n: int, concurrency: int, tag: str) -> float:
    """The inventory.reserve activity's own code path, one single-line order after another."""
    db = Database(url, pool_size=concurrency, max_overflow=0, pre_ping=PRE_PING)
    queue = list(range(n))
    now = datetime.now(timezone.utc)

    async def worker():
        while queue:
            i = queue.pop()
            node, sku = positions[i % len(positions)]
            result = await reserve_request(db, ReserveRequest(order_id=f"{tag}o{i}", at=now, fulfillments=[
                FulfillmentAssignment(fulfillment_id=f"{tag}f{i}", node_id=node,
                                      lines=[LineQty(line_id="L1", sku=sku, qty=1)])]))
            assert result.ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await db.dispose()
    return rate(n, elapsed)


def raw_updates(url: str, positions: list[tuple[str, str]], n: int, concurrency: int) -> float:
    import threading

    counter = iter(range(n))
    lock = threading.Lock()

    def worker():
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                node, sku = positions[i % len(positions)]
                conn.execute(f"UPDATE inventory_positions SET reserved = reserved + 1 WHERE node_id = %s AND sku = %s"
                             f" AND {ATS_SQL} >= 1", (node, sku))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rate(n, time.perf_counter() - start)


def bench_reservations(args) -> None:
    url = database()
    with psycopg.connect(libpq(url)) as conn:
        nodes, skus = network(conn, 20, 50, f"r{int(time.time())}")
        positions = [(n, s) for n in nodes for s in skus]
        with conn.cursor().copy("COPY inventory_positions (node_id, sku, on_hand, reserved, safety_stock, updated_at)"
                                " FROM STDIN") as cp:
            for n, s in positions:
                cp.write_row((n, s, 10**9, 0, 0, datetime.now(timezone.utc)))
        conn.commit()
    print(f"reservations: {len(positions)} positions, {args.n} single-unit reservations per measurement")
    print(f"{'clients':>8} {'raw UPDATE/s':>14} {'reserve/s':>12} {'ratio':>7}  (target ≥ 0.30)")
    for c in args.concurrency:
        raw = raw_updates(url, positions, args.n, c)
        eng = asyncio.run(engine_reservations(url, positions, args.n, c, f"c{c}-{int(time.time())}-"))
        print(f"{c:>8} {raw:>14.0f} {eng:>12.0f} {eng / raw:>7.2f}")


# ---------------------------------------------------------------- import
def bench_import(args) -> None:
    url = database()
    prefix = f"i{int(time.time())}"
    nodes_n = 500
    skus_n = max(args.positions // nodes_n, 1)
    with psycopg.connect(libpq(url)) as conn:
        nodes, skus = network(conn, nodes_n, skus_n, prefix)
    path = Path(tempfile.mkdtemp()) / "positions.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "sku", "on_hand", "safety_stock"])
        for n in nodes:
            for s in skus:
                w.writerow([n, s, 7, 1])
    rows = nodes_n * skus_n
    print(f"import: {rows} positions, {path.stat().st_size / 1e6:.0f} MB CSV")
    by_sku = path.with_name("positions-by-sku.csv")
    with open(path) as src, open(by_sku, "w") as dst:
        lines = src.readlines()
        dst.writelines(lines[:1] + sorted(lines[1:], key=lambda l: l.split(",", 2)[1::-1]))

    def raw_copy(target: str, source: Path = path) -> float:
        with psycopg.connect(libpq(url)) as conn:
            conn.execute("CREATE TEMP TABLE raw_copy (node_id text, sku text, on_hand int, safety_stock int)")
            # The file has no reserved column (rolled back with the rest).
            conn.execute("ALTER TABLE inventory_positions ALTER reserved SET DEFAULT 0")
            start = time.perf_counter()
            with open(source, "rb") as fh, conn.cursor().copy(
                    f"COPY {target} FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            seconds = time.perf_counter() - start
            conn.rollback()
        return seconds

    bare_s = raw_copy("raw_copy")
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM inventory_positions")  # the rolled-back rows must not slow the next run
    # The baseline: the same file copied as it is into the same table (its keys, indexes and foreign keys).
    table = "inventory_positions (node_id, sku, on_hand, safety_stock)"
    raw_node_s = raw_copy(table)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM inventory_positions")
    # The same rows in key order: the fastest raw load of this data into the table.
    raw_sku_s = raw_copy(table, by_sku)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM inventory_positions")
    raw_s = min(raw_node_s, raw_sku_s)
    start = time.perf_counter()
    result = import_csv(url, path)
    eng_s = time.perf_counter() - start
    assert result.rows == rows and result.created == rows
    start = time.perf_counter()
    again = import_csv(url, path)
    again_s = time.perf_counter() - start
    print(f"  raw COPY into a bare unindexed table:    {rate(rows, bare_s):>10.0f} rows/s ({bare_s:.2f} s)")
    print(f"  raw COPY into inventory_positions, the file as written (node by node): {rate(rows, raw_node_s):>10.0f}"
          f" rows/s ({raw_node_s:.2f} s); sorted in key order: {rate(rows, raw_sku_s):>10.0f} rows/s ({raw_sku_s:.2f} s)")
    print(f"  nodal inventory import (new positions):  {rate(rows, eng_s):>10.0f} rows/s ({eng_s:.2f} s)  "
          f"ratio to the faster raw COPY {raw_s / eng_s:.2f} (target ≥ 0.50); vs the bare table {bare_s / eng_s:.2f}")
    print(f"    steps: {result.seconds}")
    print(f"  the same file again (nothing changes):   {rate(rows, again_s):>10.0f} rows/s ({again_s:.2f} s), "
          f"{again.changed} ledger entries; steps: {again.seconds}")


# ---------------------------------------------------------------- availability query scaling
def bench_availability(args) -> None:
    url = database()
    prefix = f"a{int(time.time())}"
    print("availability: the GET /availability statement (whole JSON answer) for 5 SKUs over 500 nodes")
    from sqlalchemy.dialects import postgresql

    from api.routes.inventory import AVAILABILITY

    sql = str(AVAILABILITY[False].compile(dialect=postgresql.psycopg.dialect()))
    params = {"national": [], "pc": None, "channel": None, "tier": None, "excluded": [], "types": [], "low": 5,
              "buffer_units": 0, "buffer_pct": 0.0}
    results = {}
    for positions in (10_000, args.positions):
        skus_n = positions // 500
        p = f"{prefix}-{positions}-"
        with psycopg.connect(libpq(url)) as conn:
            nodes, skus = network(conn, 500, skus_n, p)
        onboard(url, nodes, skus, p)
        with psycopg.connect(libpq(url)) as conn:
            times = []
            for i in range(200):
                want = [skus[(i * 7 + k) % len(skus)] for k in range(5)]
                start = time.perf_counter()
                conn.execute(sql, {**params, "skus": want}).fetchone()
                times.append(time.perf_counter() - start)
        times.sort()
        results[positions] = (statistics.median(times), times[int(len(times) * 0.99) - 1])
        print(f"  {positions:>9} positions: median {results[positions][0] * 1000:.2f} ms, "
              f"p99 {results[positions][1] * 1000:.2f} ms")
    small, big = results[10_000][0], results[args.positions][0]
    print(f"  median at {args.positions} / at 10000: {big / small:.2f} (target ≤ 2.00)")


# ---------------------------------------------------------------- GET /availability over HTTP
async def _load(base: str, key: str, paths: list[str], clients: int, seconds: float) -> list[float]:
    import httpx

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=clients)) as http:
        async def client(c: int) -> None:
            i = c
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                r = await http.get(paths[i % len(paths)])
                latencies.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
                i += clients

        await asyncio.gather(*(client(c) for c in range(clients)))
    return sorted(latencies)


@contextmanager
def serve(url: str, key: str, workers: int, port: int = 8765, env: Optional[dict[str, str]] = None) -> Iterator[str]:
    """The API as production runs it (uvicorn workers, no access log) on this database; yields its base URL."""
    import subprocess

    import httpx

    env = {**os.environ, "NODAL_DATABASE_URL": url, "NODAL_ADMIN_KEY": key, "NODAL_LOG_LEVEL": "WARNING",
           "NODAL_TEMPORAL_ADDRESS": "127.0.0.1:1",  # the endpoints measured need no Temporal
           "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0",  # one key, one address: no limits
           **(env or {})}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                               "--log-level", "warning", "--no-access-log"], env=env,
                              cwd=Path(__file__).resolve().parents[1])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(10)


def map_postal_codes(url: str, nodes: list[str], prefix: str) -> None:
    """90 postal codes, each served by 5 stores (the nodes of `network` that are not DCs; DCs ship everywhere)."""
    with psycopg.connect(libpq(url)) as conn:
        stores = [n for i, n in enumerate(nodes) if i % 10]
        with conn.cursor().copy("COPY service_areas (postal_code, node_id, priority) FROM STDIN") as cp:
            for pc in range(90):
                for k in range(5):
                    cp.write_row((f"{prefix}{pc:05d}", stores[(pc * 5 + k) % len(stores)], k + 1))
        conn.execute("ANALYZE")
        conn.commit()


def bench_http(args) -> None:
    url = database()
    prefix = f"h{int(time.time())}-"
    with psycopg.connect(libpq(url)) as conn:
        nodes, skus = network(conn, 500, args.positions // 500, prefix)
    onboard(url, nodes, skus, prefix)
    map_postal_codes(url, nodes, prefix)
    key = "bench-admin-R7w2Kx9PqT4mZc8VnL3s"
    with serve(url, key, args.workers) as base:
        paths = [f"/availability?skus={','.join(skus[(i * 5 + k) % len(skus)] for k in range(5))}"
                 f"&postal_code={prefix}{i % 90:05d}" for i in range(500)]
        runs = {name: _wrk(base, key, ps, args.clients, args.seconds) for name, ps in
                (("warm-up", paths), ("GET /availability", paths), ("GET /livez (trivial, same app)", ["/livez"]))}
    print(f"5 SKUs for one postal code (50 DCs + 5 stores) over {args.positions} positions; wrk, {args.clients}"
          f" connections, {args.workers} server worker(s), {args.seconds:.0f} s each (target p99 ≤ 50 ms)")
    for name, (rps, p50, p99) in runs.items():
        if name != "warm-up":
            print(f"  {name:32} {rps:8.0f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")


def _wrk(base: str, key: str, paths: list[str], clients: int, seconds: float,
         bodies: list[str] | None = None, rate: float | None = None) -> tuple[float, float, float]:
    """Closed-loop load from wrk (a C client, so the load generator is not the bottleneck); with ``bodies``,
    path i is POSTed body i (JSON). With ``rate``: paced, each connection waiting clients / rate on average (at random,
    so connections do not send in step) between requests: the offered load is about ``rate`` per second while answers
    come well inside that wait (no queue of clients)."""
    import re
    import shutil
    import subprocess

    if not shutil.which("wrk"):
        raise SystemExit("install wrk (apt-get install wrk) for the HTTP benchmark")
    script = Path(tempfile.mkdtemp()) / "paths.lua"
    script.write_text("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
                      + ("bodies = {" + ",".join(f"[=[{b}]=]" for b in bodies) + "}\n"
                         'wrk.headers["Content-Type"] = "application/json"\n' if bodies else "")
                      + f'wrk.headers["Authorization"] = "Bearer {key}"\n'
                      # Uniform on [0, 2 × the mean wait]: connections that waited alike would send in bursts.
                      + (f"delay = function()\n  return math.random() * {2000 * clients / rate:.3f}\nend\n" if rate else "")
                      + "i = 0\nrequest = function()\n  i = i + 1\n"
                      + ("  return wrk.format('POST', paths[(i % #paths) + 1], nil, bodies[(i % #bodies) + 1])\nend\n"
                         if bodies else "  return wrk.format(nil, paths[(i % #paths) + 1])\nend\n"))
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", str(script), base],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors under load:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), ms("50%"), ms("99%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reservations")
    r.add_argument("--n", type=int, default=3000)
    r.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    i = sub.add_parser("import")
    i.add_argument("--positions", type=int, default=1_000_000)
    a = sub.add_parser("availability")
    a.add_argument("--positions", type=int, default=1_000_000)
    h = sub.add_parser("http")
    h.add_argument("--positions", type=int, default=1_000_000)
    h.add_argument("--clients", type=int, default=50)
    h.add_argument("--workers", type=int, default=2)
    h.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    {"reservations": bench_reservations, "import": bench_import, "availability": bench_availability,
     "http": bench_http}[args.cmd](args)


if __name__ == "__main__":
    main()
