"""Quotes against orders on scarce stock: does the date an order gets equal the date quoted just before, and is
anything ever oversold?

    python bench/quote_accuracy.py [--shoppers 12] [--browsers 4] [--orders 300] [--checkout direct|hold]

A whole stack (bench/stack.py: PostgreSQL, the Temporal dev server, a worker, the API). A national network of 12
nodes holds 30 SKUs, 0 to --max-units units each, topped up now and then, so orders compete for the last units. Shoppers each
quote a cart (POST /promise, ship standard) and, when the quote offers all of it, order it at once and wait for
the order's promise (``--checkout hold``: as a storefront's checkout does, they hold the cart first, POST /holds,
and order with the hold; a hold refused because the stock moved sends the shopper back to quoting, as a checkout
would); browsers only quote, all the time, as product pages do. Reported: the share of orders whose
promised date equals the quote's (goal ≥ 99.5%), why the others differ, and positions sold beyond their stock
(goal: none).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import ADMIN_KEY, Stack  # noqa: E402

ENV = {"NODAL_REMORSE_WINDOW": "2s", "NODAL_ADAPTER_LATENCY_MS": "5", "NODAL_RATE_LIMIT_PER_SECOND": "0",
       "NODAL_RATE_LIMIT_PER_ADDRESS": "0", "NODAL_LOG_LEVEL": "WARNING"}
CITIES = [(41.88, -87.63), (40.71, -74.00), (34.05, -118.24), (29.76, -95.37), (33.45, -112.07), (39.95, -75.17),
          (32.78, -96.80), (37.77, -122.42), (47.61, -122.33), (39.74, -104.99), (25.76, -80.19), (33.75, -84.39)]
SETTLED = {"confirmed", "released", "accepted", "partially_shipped", "shipped", "delivered", "backordered", "rejected",
           "cancelled", "completed"}


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class Run:
    def __init__(self, stack: Stack, shoppers: int, browsers: int, orders: int, max_units: int, checkout: str = "direct"):
        self.stack, self.shoppers, self.browsers, self.target = stack, shoppers, browsers, orders
        self.max_units, self.checkout = max_units, checkout
        self.refused_holds = 0
        self.prefix = "q" + uuid.uuid4().hex[:6]
        self.outcomes: Counter = Counter()
        self.misses: list[tuple] = []
        self.placed = 0
        self.quotes = 0
        self.h = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def setup(self, http: httpx.AsyncClient) -> None:
        p, rng = self.prefix, random.Random(3)
        self.postals = []
        for i, (lat, lon) in enumerate(CITIES):
            kind = "dc" if i % 3 == 0 else "store"
            await http.put(f"/nodes/{p}-N{i}", headers=self.h, json={
                "name": f"N{i}", "type": kind, "lat": lat, "lon": lon, "capabilities": ["ship"],
                "postal_code": f"{p}-{i:05d}", "handling_cost": "0.50", "processing_time": "1h",
                "cutoff_time": "16:00", "timezone": "America/Chicago"})
        areas = []
        for i, (lat, lon) in enumerate(CITIES):
            postal = f"{p}-{i:05d}"
            self.postals.append(postal)
            areas.append({"postal_code": postal, "lat": lat + 0.05, "lon": lon + 0.05,
                          "nodes": [{"node_id": f"{p}-N{i}", "priority": 1}] if i % 3 else []})
        await http.put("/service-areas", headers=self.h, json=areas)
        self.skus = [f"{p}-S{j}" for j in range(30)]
        for s in self.skus:
            await http.put(f"/skus/{s}", headers=self.h, json={"name": s, "weight_kg": 1.0})
        for i in range(len(CITIES)):
            await http.put(f"/inventory/{p}-N{i}", headers=self.h, json={
                "as_of": "2026-01-01T00:00:00Z",
                "items": [{"sku": s, "on_hand": rng.randint(0, self.max_units)} for s in self.skus]})
        self.channel = f"{p}-web"
        self.key = (await http.post("/api-keys", headers=self.h, json={"role": "client", "channel": self.channel})
                    ).json()["key"]

    def cart(self, rng: random.Random) -> tuple[str, list[dict]]:
        return rng.choice(self.postals), [{"sku": s, "qty": rng.randint(1, 2)} for s in rng.sample(self.skus, rng.randint(1, 3))]

    async def quote(self, http: httpx.AsyncClient, postal: str, lines: list[dict]) -> dict:
        r = await http.post("/promise", headers={"Authorization": f"Bearer {self.key}"}, json={
            "channel": self.channel, "destination": {"postal_code": postal}, "lines": lines,
            "methods": ["ship_standard"]})
        assert r.status_code == 200, r.text
        self.quotes += 1
        return r.json()

    async def shopper(self, http: httpx.AsyncClient, c: int) -> None:
        rng = random.Random(100 + c)
        while self.placed < self.target:
            postal, lines = self.cart(rng)
            quote = await self.quote(http, postal, lines)
            option = next((o for o in quote["options"] if o["method"] == "ship_standard" and o["complete"]
                           and not o["from_incoming_supply"]), None)
            if option is None:
                await asyncio.sleep(0.05)
                continue
            quoted_at = datetime.now(timezone.utc)
            hold_id = None
            if self.checkout == "hold":
                r = await http.post("/holds", headers={"Authorization": f"Bearer {self.key}"}, json={
                    "channel": self.channel, "destination": {"postal_code": postal}, "lines": lines})
                if r.status_code == 409:  # the stock went between the quote and the checkout: quote again
                    self.refused_holds += 1
                    continue
                assert r.status_code == 201, r.text
                hold_id = r.json()["hold_id"]
            self.placed += 1
            r = await http.post("/orders", headers={"Authorization": f"Bearer {self.key}"}, json={
                **({"hold_id": hold_id} if hold_id else {}),
                "external_id": f"{self.prefix}-{c}-{self.placed}", "channel": self.channel,
                "customer": {"id": f"c{c}"},
                "lines": [{"line_id": f"L{k + 1}", "sku": l["sku"], "qty": l["qty"], "unit_price": "10.00",
                           "delivery": {"method": "ship_standard", "address": {"postal_code": postal}}}
                          for k, l in enumerate(lines)]})
            assert r.status_code in (200, 201), r.text
            order_id = r.json()["order_id"]
            deadline = time.monotonic() + 60
            while True:
                order = (await http.get(f"/orders/{order_id}", headers=self.h)).json()
                if order["status"] in SETTLED and (order["promised_by"] or order["status"] in (
                        "backordered", "rejected", "cancelled")):
                    break
                if time.monotonic() > deadline:
                    order["status"] = "not settled in 60 s"
                    break
                await asyncio.sleep(0.1)
            quoted, got = when(option["promised_by"]), when(order.get("promised_by"))
            if got == quoted:
                self.outcomes["same date"] += 1
            else:
                why = ("later" if got and got > quoted else "earlier" if got else order["status"])
                self.outcomes[f"differs: {why}"] += 1
                self.misses.append((order_id, hold_id or order_id, quoted_at, [l["sku"] for l in lines],
                                    f"{order_id}: quoted {option['promised_by']} from {option['nodes']}, got "
                                    f"{order.get('promised_by')} from {sorted({f['node_id'] for f in order.get('fulfillments') or []})}"
                                    f" ({order['status']})"))

    async def browser(self, http: httpx.AsyncClient, c: int) -> None:
        rng = random.Random(900 + c)
        while self.placed < self.target:
            await self.quote(http, *self.cart(rng))

    async def restock(self, http: httpx.AsyncClient) -> None:
        """A unit here and there arrives, so the run does not just sell out."""
        rng, n = random.Random(7), 0
        while self.placed < self.target:
            await asyncio.sleep(0.5)
            n += 1
            await http.post("/inventory/adjustments", headers=self.h, json=[{
                "node_id": f"{self.prefix}-N{rng.randrange(len(CITIES))}", "sku": rng.choice(self.skus), "delta": 2,
                "reason": "receipt", "event_id": f"{self.prefix}-r{n}"}])


async def run(args) -> None:
    stack = Stack(Path(tempfile.mkdtemp(prefix="nodal-accuracy-")), env=ENV)
    with stack:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
            r = Run(stack, args.shoppers, args.browsers, args.orders, args.max_units, args.checkout)
            await r.setup(http)
            started = time.monotonic()
            await asyncio.gather(*(r.shopper(http, c) for c in range(args.shoppers)),
                                 *(r.browser(http, c) for c in range(args.browsers)), r.restock(http))
            seconds = time.monotonic() - started
        with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            # A miss is a race when the cart's stock moved anywhere (another order's reservation, a receipt) between
            # the quote and this order's own reservation: the quote was right when given. Otherwise it was wrong.
            raced = set()
            # With a checkout hold the cart's stock was reserved by the hold.
            for order_id, reserved_by, quoted_at, skus, _ in r.misses:
                if conn.execute(
                        "SELECT EXISTS (SELECT 1 FROM inventory_ledger l WHERE (l.order_id IS NULL OR l.order_id <> ALL(%s))"
                        " AND l.sku = ANY(%s) AND l.at >= %s - interval '50 milliseconds' AND l.at <= COALESCE("
                        "  (SELECT max(m.at) FROM inventory_ledger m WHERE m.order_id = %s AND m.reason = 'reserve'),"
                        "  now()))", ([order_id, reserved_by], skus, quoted_at, reserved_by)).fetchone()[0]:
                    raced.add(order_id)
            oversold = conn.execute("SELECT count(*) FROM inventory_positions WHERE node_id LIKE %s"
                                    " AND on_hand - reserved - safety_stock < 0", (f"{r.prefix}-%",)).fetchone()[0]
    total = sum(r.outcomes.values())
    same = r.outcomes["same date"]
    print(f"{total} orders placed right after their quote ({args.shoppers} shoppers, {args.browsers} quoting browsers,"
          f" {r.quotes} quotes in {seconds:.0f} s, 12 nodes × 30 SKUs of 0-{args.max_units} units; checkout:"
          f" {args.checkout}{f', {r.refused_holds} holds refused as the stock moved' if args.checkout == 'hold' else ''})")
    print(f"  promised date = quoted date: {same} ({same / max(total, 1):.2%}; goal ≥ 99.5%)")
    for outcome, n in sorted(r.outcomes.items()):
        if outcome != "same date":
            print(f"  {outcome}: {n}")
    print(f"  of the differences, the cart's stock moved between quote and order (another order, a receipt):"
          f" {len(raced)}; nothing moved, the quote was wrong: {len(r.misses) - len(raced)}")
    for miss in r.misses[:10]:
        print(f"    {miss[-1]}{' — raced' if miss[0] in raced else ''}")
    print(f"  positions sold beyond their stock: {oversold} (goal: none)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shoppers", type=int, default=12)
    ap.add_argument("--browsers", type=int, default=4)
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--max-units", type=int, default=3, help="each position starts with 0 to this many units")
    ap.add_argument("--checkout", choices=("direct", "hold"), default="direct",
                    help="order straight after the quote, or hold the cart first (POST /holds) and order with the hold")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
