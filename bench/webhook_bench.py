"""Outbound events: delivery rate against a bare HTTP POST loop, and order throughput with subscribers.

A fresh stack (bench/stack.py: PostgreSQL, Temporal dev server, one worker, the API, all processes) and a fast
receiver in a process of its own (bench/receiver.py: 200 at once).

1. Delivery rate. The same receiver, the same body size, in one run: a bare POST loop from this process (one
   request after another, with the sender's own client, aiohttp; and the same with as many in flight as a
   subscription allows, NODAL_WEBHOOK_CONCURRENCY),
   then --events events of --streams orders written to the outbox in one transaction, delivered by the
   subscription's workflow (signed, in order per order, each recorded): events/s from the commit to the last 2xx.
2. Order throughput with subscribers. Customers place orders for --seconds (closed loop) while a partner walks every
   fulfillment (bench/load_bench.py), with no subscription, and with 3 subscriptions to every event (three paths of
   the receiver), --rounds phases each way, interleaved. Reported: orders/s created → released of each, the ratio of
   their means, the subscribers' delivery latency meanwhile (event written → 2xx, p50/p99) and CPU per order.

    python bench/webhook_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_bench import ENV, Load  # noqa: E402
from bench.stack import ADMIN_KEY, ROOT, Stack, wait_for  # noqa: E402
from nodal.ports import free_port  # noqa: E402

H = {"Authorization": f"Bearer {ADMIN_KEY}"}
BODY = json.dumps({"type": "order.shipped", "timestamp": "2026-12-07T14:03:11.402Z", "data": {
    "order_id": "ORD-7K3M9Q2XR4TBW8PL", "external_id": "A-1001", "channel": "web", "status": "shipped",
    "previous_status": "released", "promised_by": "2026-12-09T23:59:00+00:00"}}).encode()


def start_receiver() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/count", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, 30, "the receiver")
    return proc, url


async def count(url: str, path: str | None = None) -> int:
    async with httpx.AsyncClient() as c:
        got = (await c.get(url + "/count")).json()
    return got["posts"].get(path, 0) if path else got["unique"]


async def bare_loop(url: str, n: int, concurrency: int = 1) -> float:
    """POSTs/s of a plain loop to the receiver with the sender's own HTTP client (aiohttp), no database, no signing:
    the yardstick."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async with session.post(url + "/bare", data=BODY) as r:
            await r.read()
        left = iter(range(n))

        async def loop() -> None:
            for _ in left:
                async with session.post(url + "/bare", data=BODY, headers={"content-type": "application/json"}) as r:
                    await r.read()
        t = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return n / (time.perf_counter() - t)


async def outbox_rate(stack: Stack, url: str, events: int, streams: int) -> tuple[float, int]:
    """Events/s from one commit of ``events`` events to the subscription's last 2xx."""
    from events import outbox
    from events.catalogue import NewEvent
    from nodal.db import Database

    name = "bench-rate"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        r = await http.put(f"/webhooks/{name}", headers=H, json={"url": url + "/hook", "events": ["*"],
                                                                 "channel": "bench-rate"})
        assert r.status_code in (200, 201), r.text
    db = Database(stack.database_url)
    data = json.loads(BODY)["data"]
    now = datetime.now(timezone.utc)
    batch = [NewEvent(id=f"bench.{i}", type="order.shipped", stream=f"BENCH-{i % streams}", at=now, data=data,
                      channel="bench-rate") for i in range(events)]
    before = await count(url, "/hook")
    t = time.perf_counter()
    async with db.engine.begin() as conn:
        await outbox.write(conn, batch)
    while await count(url, "/hook") - before < events:
        await asyncio.sleep(0.05)
    took = time.perf_counter() - t
    async with db.engine.connect() as conn:
        from sqlalchemy import text
        pending = (await conn.execute(text("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook = :w AND"
                                           " status = 'pending'"), {"w": name})).scalar()
    await db.dispose()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        await http.delete(f"/webhooks/{name}", headers=H)
    return events / took, pending


async def orders_with(stack: Stack, url: str, subscribers: int, clients: int, seconds: float) -> dict:
    names = [f"bench-sub-{i}" for i in range(subscribers)]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        for n in names:
            r = await http.put(f"/webhooks/{n}", headers=H, json={"url": f"{url}/{n}", "events": ["*"]})
            assert r.status_code in (200, 201), r.text
    load = Load(stack, clients, seconds)
    res = await load.run()
    res["cpu"] = {k: v / max(res["orders"], 1) * 1000 for k, v in load.cpu.items()}
    res["latency"] = await latency(stack, names)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        for n in names:
            await http.delete(f"/webhooks/{n}", headers=H)
    return res


async def latency(stack: Stack, names: list[str]) -> tuple[float, float, int]:
    import psycopg

    for _ in range(600):  # until every event of the run is delivered
        with psycopg.connect(stack.database_url) as conn:
            pending = conn.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'"
                                   " AND webhook = ANY(%s)", (names,)).fetchone()[0]
            if not pending:
                rows = conn.execute(
                    "SELECT EXTRACT(EPOCH FROM d.delivered_at - e.created_at) FROM webhook_deliveries d"
                    " JOIN events e ON e.seq = d.event_seq WHERE d.webhook = ANY(%s) AND d.status = 'delivered'",
                    (names,)).fetchall()
                states = dict(conn.execute("SELECT status, COUNT(*) FROM webhook_deliveries WHERE webhook = ANY(%s)"
                                           " GROUP BY 1", (names,)).fetchall())
                if set(states) - {"delivered"}:
                    print(f"   deliveries by status: {states}")
                lags = sorted(float(r[0]) for r in rows)
                return (statistics.median(lags) if lags else 0.0,
                        lags[int(len(lags) * 0.99) - 1] if lags else 0.0, len(lags))
        await asyncio.sleep(0.5)
    return float("nan"), float("nan"), 0


async def bench(args) -> list[str]:
    stack = Stack(Path(tempfile.mkdtemp(prefix="nodal-webhooks-")), workers=1, env=ENV)
    await asyncio.to_thread(stack.start)
    receiver, url = start_receiver()
    out = []
    try:
        from nodal.settings import Settings
        concurrency = Settings().webhook_concurrency
        seq = await bare_loop(url, args.bare)
        par = await bare_loop(url, args.bare, concurrency)
        rate, pending = await outbox_rate(stack, url, args.events, args.streams)
        out += ["1. Delivery rate to a fast local receiver (same receiver, same run):",
                f"   bare POST loop, one at a time:          {seq:7.0f} POSTs/s",
                f"   bare POST loop, {concurrency} in flight:             {par:7.0f} POSTs/s",
                f"   subscription ({args.events} events, {args.streams} orders, signed, in order per order, each "
                f"recorded): {rate:7.0f} events/s = {rate / seq:.2f} × the loop one at a time, {rate / par:.2f} × "
                f"{concurrency} in flight (goal ≥ 0.5){'' if not pending else f'; {pending} still pending'}"]
        # Interleaved (without, with, with, without, ...): a later phase meets a fuller database, so neither side
        # gets all the early ones.
        runs: dict[int, list[dict]] = {0: [], 3: []}
        for r in range(args.rounds):
            for subs in ((0, 3) if r % 2 == 0 else (3, 0)):
                runs[subs].append(await orders_with(stack, url, subs, args.clients, args.seconds))
        rate = {k: statistics.mean(x["rate"] for x in v) for k, v in runs.items()}
        lat = [x["latency"] for x in runs[3]]
        cpu = {k: {part: statistics.mean(x["cpu"][part] for x in v) for part in v[0]["cpu"]} for k, v in runs.items()}
        out += [f"2. Orders through the API, {args.clients} clients, {args.rounds} phases of {args.seconds:.0f} s each way"
                " (interleaved), a partner walking every fulfillment (create → released):",
                "   no subscription:  " + ", ".join(f"{x['rate']:.1f}" for x in runs[0])
                + f" orders/s, mean {rate[0]:.1f}",
                "   3 subscriptions to every event: " + ", ".join(f"{x['rate']:.1f}" for x in runs[3])
                + f" orders/s, mean {rate[3]:.1f} = {rate[3] / rate[0]:.2f} × without (goal ≥ 0.9)",
                f"   the subscribers meanwhile: {sum(n for *_, n in lat)} deliveries, event written → 2xx p50 "
                f"{statistics.mean(p for p, *_ in lat) * 1000:.0f} ms, p99 {max(p for _, p, _ in lat) * 1000:.0f} ms",
                "   CPU ms per order placed, without → with: " + ", ".join(
                    f"{k} {cpu[0][k]:.0f} → {cpu[3][k]:.0f}" for k in cpu[0])]
    finally:
        receiver.terminate()
        await asyncio.to_thread(stack.stop)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bare", type=int, default=10000, help="POSTs of each bare loop")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=600, help="orders the events belong to")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="phases each way")
    print("\n".join(asyncio.run(bench(ap.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
