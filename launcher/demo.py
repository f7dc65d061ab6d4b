"""The demo: a stream of orders and a simulated partner network, all through the public API.

Customers place orders on three channels; partners accept (sometimes reject, sometimes let the
acceptance timer run out), pick (sometimes short), pack, ship and deliver; stores make pickups ready and hand
them over to customers who come in or check in from the curb with the code they were sent (some mistype it,
some refuse an item, a few never come); a pickup at a store without the stock comes to it from a DC (ship to
store: the DC ships, the store receives); some customers return what they got, by post or over a store's counter,
or exchange it for another item (some before sending theirs back, a few of whom never do); the B2B buyer's
approver approves most of the orders that need it and declines a few.
Everything goes through the same HTTP API real clients and partner apps use; only the customer's inbox (the
pickup code the simulated notification provider delivered) is read outside it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Optional

import httpx

from api.routes.imports import CSV_COLUMNS
from launcher.seed import CASED, DEMO_AREAS, demo_skus

CHANNELS = ["web", "marketplace", "b2b-portal"]
SCAN_PLACES = ["Newark, NJ hub", "Chicago, IL hub", "Memphis, TN hub", "Louisville, KY hub", "Dallas, TX hub",
               "Ontario, CA hub", "local delivery station"]


class DemoDriver:
    def __init__(self, api_url: str, admin_key: str, orders_per_minute: int = 30, seed: int | None = None,
                 console: Any = None, reject_rate: float = 0.07, ignore_rate: float = 0.03,
                 short_pick_rate: float = 0.05, return_rate: float = 0.3,
                 inbox: Optional[Callable[[str, str], Awaitable[Optional[dict]]]] = None, no_show_rate: float = 0.03,
                 refuse_rate: float = 0.08, wrong_code_rate: float = 0.05, in_store_return_rate: float = 0.4,
                 exchange_rate: float = 0.25, keep_rate: float = 0.1, pace: float = 1.0,
                 curbside_rate: float = 0.08, pickup_rate: float = 0.12, lost_rate: float = 0.02,
                 damaged_rate: float = 0.01, refused_rate: float = 0.01, transit: float = 1.0,
                 transport: Optional[httpx.AsyncBaseTransport] = None):
        self.api_url = api_url
        self.admin = admin_key
        self.opm = orders_per_minute
        self.rng = random.Random(seed)
        self.console = console
        self.reject_rate, self.ignore_rate = reject_rate, ignore_rate
        self.short_pick_rate, self.return_rate = short_pick_rate, return_rate
        self.client_keys: dict[str, str] = {}
        self.partner_keys: dict[str, str] = {}
        self.seen: dict[str, float] = {}  # (fulfillment|return, status) first seen
        self.ignored: set[str] = set()
        self.returned: set[str] = set()
        self.placed = 0
        self.pending: set[asyncio.Task] = set()
        # The customer's inbox: (order_id, notification event) → what they were sent.
        self.inbox = inbox
        self.no_show_rate, self.refuse_rate, self.wrong_code_rate = no_show_rate, refuse_rate, wrong_code_rate
        self.in_store_return_rate = in_store_return_rate
        # Of the returns: exchanges instead; of advance exchanges: customers who keep both.
        self.exchange_rate, self.keep_rate = exchange_rate, keep_rate
        self.transport = transport  # tests drive an app in process
        self.curbside_rate, self.pickup_rate = curbside_rate, pickup_rate  # shares of orders (the rest ships)
        self.pace = pace  # how long people take between steps, as a multiple of the demo's (tests hurry them)
        self.channel_of: dict[str, str] = {}  # order → channel, for the customer's check-in
        self.arrived: set[str] = set()
        self.stats: Counter = Counter()
        # The carriers' own side: what becomes of each parcel once it left the node, and how far its scans are.
        self.lost_rate, self.damaged_rate, self.refused_rate = lost_rate, damaged_rate, refused_rate
        self.transit = transit  # how long parcels take between scans, as a multiple of the demo's
        self.carrier_keys: dict[str, str] = {}
        self.parcels: dict[str, list[str]] = {}  # fulfillment → the scans still to come
        self.handed: dict[str, dict] = {}  # parcels the carriers have, until their last scan

    async def _call(self, http: httpx.AsyncClient, method: str, path: str, key: str, **kw) -> Optional[httpx.Response]:
        try:
            headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
            return await http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError:
            return None  # the API is restarting or busy: try again next round

    async def setup(self, http: httpx.AsyncClient) -> None:
        for ch in CHANNELS:
            # The B2B portal's key buys as the b2b tier (orders it places may change after release).
            r = await self._call(http, "POST", "/api-keys", self.admin, json={
                "role": "client", "channel": ch, "label": "demo", **({"tier": "b2b"} if ch == "b2b-portal" else {})})
            self.client_keys[ch] = r.json()["key"]
        # The B2B buyer's approver: its orders marked approval_required wait for this key.
        r = await self._call(http, "POST", "/api-keys", self.admin, json={
            "role": "client", "channel": "b2b-portal", "tier": "b2b", "approver": True, "label": "demo approver"})
        self.approver_key = r.json()["key"]
        nodes = (await self._call(http, "GET", "/nodes", self.admin)).json()["nodes"]
        for n in nodes:
            r = await self._call(http, "POST", "/api-keys", self.admin, json={"role": "partner", "node_id": n["node_id"],
                                                                                "label": "demo partner"})
            self.partner_keys[n["node_id"]] = r.json()["key"]
        for carrier in (await self._call(http, "GET", "/carriers", self.admin)).json()["carriers"]:
            name = carrier["carrier"]
            r = await self._call(http, "POST", "/api-keys", self.admin, json={"role": "carrier", "carrier": name,
                                                                                "label": "demo carrier"})
            self.carrier_keys[name] = r.json()["key"]
        self.pickup_nodes = [n["node_id"] for n in nodes if "pickup" in n["capabilities"]]
        self.curbside_nodes = [n["node_id"] for n in nodes if "curbside" in n["capabilities"]]
        self.return_counters = [n["node_id"] for n in nodes if "returns" in n["capabilities"]]

    def _order(self) -> dict[str, Any]:
        channel = self.rng.choice(CHANNELS)
        skus = self.rng.sample(demo_skus(), self.rng.randint(1, 3))
        roll = self.rng.random()
        if roll < self.curbside_rate and self.curbside_nodes:
            delivery = {"method": "curbside", "pickup_node_id": self.rng.choice(self.curbside_nodes)}
        elif roll < self.curbside_rate + self.pickup_rate and self.pickup_nodes:
            delivery = {"method": "pickup", "pickup_node_id": self.rng.choice(self.pickup_nodes)}
        else:
            postal = self.rng.choice(list(DEMO_AREAS))
            method = "ship_express" if self.rng.random() < 0.2 else "ship_standard"
            delivery = {"method": method, "address": {"postal_code": postal}}
        body = {
            "external_id": f"demo-{uuid.uuid4().hex[:12]}", "channel": channel,
            "customer": {"id": f"cust-{self.rng.randint(1, 400)}", "email": "customer@example.com",
                         "tier": "b2b" if channel == "b2b-portal" else None},
            "lines": [{"sku": s, "qty": self.rng.randint(1, 3 if channel != "b2b-portal" else 10),
                       "unit_price": f"{self.rng.uniform(9, 120):.2f}", "delivery": delivery} for s in skus],
        }
        return self._b2b(body) if channel == "b2b-portal" else body

    def _b2b(self, body: dict[str, Any]) -> dict[str, Any]:
        """A distributor's order: cased SKUs by the case, some buyers on account (net 30, a credit limit), some
        orders for the DCs' waves, a share needing the buyer's approver."""
        for line in body["lines"]:
            if line["sku"].split("-")[1].lower() in CASED:
                line.update(uom="case", qty=self.rng.randint(1, 4), unit_price=f"{self.rng.uniform(60, 240):.2f}")
        n = int(body["customer"]["id"].split("-")[1])
        if n % 3 == 0:
            body["customer"]["account"] = {"terms": "net30", "credit_limit": "2500.00"}
        policy = {"approval_required": self.rng.random() < 0.3, "release": "wave" if self.rng.random() < 0.5
                  else "immediate"}
        return {**body, "policy": policy}

    async def place_orders(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            body = self._order()
            key = self.client_keys[body["channel"]]
            r = await self._call(http, "POST", "/orders", key, json=body)
            if r is not None and r.status_code in (200, 201):
                self.placed += 1
                self.channel_of[r.json()["order_id"]] = body["channel"]
                roll = self.rng.random()
                if r.json()["status"] == "awaiting_approval":  # approval required, or over the credit limit
                    self._later(self._approve(http, r.json()["order_id"]))
                elif roll < 0.06:
                    self._later(self._change_mind(http, key, r.json()["order_id"], body, cancel=True))
                elif roll < 0.12:
                    self._later(self._change_mind(http, key, r.json()["order_id"], body, cancel=False))
            await asyncio.sleep(60 / max(self.opm, 1))

    def _later(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _change_mind(self, http: httpx.AsyncClient, key: str, order_id: str, body: dict, cancel: bool) -> None:
        """A customer cancels, or changes a quantity, inside the remorse window."""
        await asyncio.sleep(self.rng.uniform(1, 6))
        if cancel:
            await self._call(http, "POST", f"/orders/{order_id}/cancel", key, json={"reason": "changed my mind"})
        else:
            order = (await self._call(http, "GET", f"/orders/{order_id}", key)).json()
            lines = [{"line_id": l["line_id"], "sku": l["sku"], "qty": l["qty"] + 1, "unit_price": l["unit_price"],
                      "delivery": l["delivery"]} for l in order["lines"]]
            await self._call(http, "PATCH", f"/orders/{order_id}", key, json={"lines": lines})

    async def _approve(self, http: httpx.AsyncClient, order_id: str) -> None:
        """The buyer's approver looks at the order after a while: most are approved, some declined."""
        await asyncio.sleep(self.rng.uniform(2, 8) * self.pace)
        if self.rng.random() < 0.85:
            r = await self._call(http, "POST", f"/orders/{order_id}/approve", self.approver_key, json={"note": "ok"})
            if r is not None and r.status_code == 200:
                self.stats["approved"] += 1
        else:
            r = await self._call(http, "POST", f"/orders/{order_id}/decline", self.approver_key,
                                 json={"reason": "over budget"})
            if r is not None and r.status_code == 200:
                self.stats["declined"] += 1

    def _due(self, key: str, low: float = 1.0, high: float = 4.0) -> bool:
        first = self.seen.setdefault(key, time.monotonic() + self.rng.uniform(low, high) * self.pace)
        return time.monotonic() >= first

    async def play_partners(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for node_id, key in self.partner_keys.items():
                r = await self._call(http, "GET", f"/fulfillments?node_id={node_id}", key)
                if r is None or r.status_code != 200:
                    continue
                for f in r.json()["fulfillments"]:
                    await self._advance(http, key, f)
            await self._returns(http)
            await asyncio.sleep(self.pace)

    async def _advance(self, http: httpx.AsyncClient, key: str, f: dict) -> None:
        fid, status = f["fulfillment_id"], f["status"]
        if fid in self.ignored or not self._due(f"{fid}:{status}"):
            return
        path = f"/fulfillments/{fid}"
        if status == "released":
            roll = self.rng.random()
            if roll < self.ignore_rate:
                self.ignored.add(fid)  # the acceptance timer will reroute it
            elif roll < self.ignore_rate + self.reject_rate:
                await self._call(http, "POST", f"{path}/reject", key, json={"reason": "stock damaged"})
            else:
                await self._call(http, "POST", f"{path}/accept", key)
        elif status == "accepted":
            lines = [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]
            if self.rng.random() < self.short_pick_rate and lines:
                lines[0]["qty"] = max(lines[0]["qty"] - 1, 0)
            await self._call(http, "POST", f"{path}/pick", key, json={"lines": lines})
        elif f["kind"] == "pickup":
            await self._counter(http, key, f)
        elif status == "in_transit":
            # Ship to store: the receiving store books it in (its own key; the sender's queue shows it too).
            if self.partner_keys.get(f.get("to_node_id") or "") == key:
                r = await self._call(http, "POST", f"{path}/receive", key)
                if r is not None and r.status_code == 200:
                    self.stats["received_at_store"] += 1
        elif status in ("picked", "packed") or (status == "shipped" and f.get("carrier") not in self.carrier_keys):
            # A parcel the carriers scan is theirs to deliver (play_carriers); a node's own van, the node's word.
            step = {"picked": "pack", "packed": "ship", "shipped": "deliver"}[status]
            await self._call(http, "POST", f"{path}/{step}", key)

    async def play_carriers(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """The carriers scan the parcels they were given (the shipped ones) on their own timeline, with transit
        noise: in transit, out for delivery, delivered; a few are lost, damaged or refused (and come back)."""
        while not stop.is_set():
            r = await self._call(http, "GET", "/fulfillments?status=shipped&limit=1000", self.admin)
            for f in r.json()["fulfillments"] if r is not None and r.status_code == 200 else []:
                if f["kind"] == "delivery" and f.get("carrier") in self.carrier_keys and f.get("tracking"):
                    self.handed.setdefault(f["fulfillment_id"], f)
            for fid, f in list(self.handed.items()):  # a parcel that went wrong still has its scans to come
                await self._scan(http, f)
                if not self.parcels.get(fid, True):
                    del self.handed[fid]
            await asyncio.sleep(self.pace)

    def _route(self) -> list[str]:
        roll = self.rng.random()
        if roll < self.lost_rate:
            return ["in_transit", "exception:lost"]
        if roll < self.lost_rate + self.damaged_rate:
            return ["in_transit", "exception:damaged", "returned_to_sender"]
        if roll < self.lost_rate + self.damaged_rate + self.refused_rate:
            return ["in_transit", "out_for_delivery", "exception:refused", "returned_to_sender"]
        return ["in_transit", "out_for_delivery", "delivered"]

    async def _scan(self, http: httpx.AsyncClient, f: dict) -> None:
        fid = f["fulfillment_id"]
        todo = self.parcels.setdefault(fid, self._route())
        if not todo or not self._due(f"{fid}:scan:{len(todo)}", 1.0 * self.transit, 5.0 * self.transit):  # transit noise
            return
        event, _, reason = todo[0].partition(":")
        body = {"tracking": f["tracking"], "event": event, "at": datetime.now(timezone.utc).isoformat(),
                "detail": {"location": self.rng.choice(SCAN_PLACES)}, **({"reason": reason} if reason else {})}
        if event == "delivered":
            body["detail"]["proof"] = f"POD-{fid[-6:]}"
        r = await self._call(http, "POST", f"/carriers/{f['carrier']}/events", self.carrier_keys[f["carrier"]],
                             json=[body])
        if r is not None and r.status_code == 200:
            todo.pop(0)
            self.stats["carrier_scans"] += 1
            self.stats[f"carrier_{reason or event}"] += 1

    async def _counter(self, http: httpx.AsyncClient, key: str, f: dict) -> None:
        """A pickup: the store makes it ready; the customer comes (curbside: checks in first) with their code."""
        fid, path = f["fulfillment_id"], f"/fulfillments/{f['fulfillment_id']}"
        if f["status"] == "picked":
            await self._call(http, "POST", f"{path}/ready", key)
            return
        if f["status"] != "ready_for_pickup" or self.inbox is None:
            return
        if self.rng.random() < self.no_show_rate:
            self.ignored.add(fid)  # never comes: the hold ends, the stock goes back on the shelf
            self.stats["no_show"] += 1
            return
        client = self.client_keys.get(self.channel_of.get(f["order_id"], ""))
        if f["method"] == "curbside" and fid not in self.arrived and client:
            self.arrived.add(fid)
            await self._call(http, "POST", f"{path}/arrived", client,
                             json={"bay": str(self.rng.randint(1, 8)), "note": "grey hatchback"})
            self.seen[f"{fid}:ready_for_pickup"] = time.monotonic() + self.rng.uniform(0.5, 3) * self.pace  # walks out to the car
            return
        sent = await self.inbox(f["order_id"], "ready_for_pickup")
        code = (sent or {}).get("pickup_code")
        if not code:
            return
        if self.rng.random() < self.wrong_code_rate:
            wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
            r = await self._call(http, "POST", f"{path}/collect", key, json={"pickup_code": wrong})
            if r is not None and r.status_code == 422:
                self.stats["wrong_code_refused"] += 1
        body: dict[str, Any] = {"pickup_code": code}
        if len(f["lines"]) > 1 and self.rng.random() < self.refuse_rate:
            body["lines"] = [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"][1:]]  # refuses one item
            self.stats["partly_refused"] += 1
        r = await self._call(http, "POST", f"{path}/collect", key, json=body)
        if r is not None and r.status_code == 200:
            self.stats["collected"] += 1

    async def _returns(self, http: httpx.AsyncClient) -> None:
        r = await self._call(http, "GET", "/orders?status=delivered&limit=100", self.admin)
        if r is None or r.status_code != 200:
            return
        for o in r.json()["orders"]:
            oid = o["order_id"]
            if oid in self.returned or not self._due(f"{oid}:delivered", 2, 6):
                continue
            self.returned.add(oid)
            if self.rng.random() >= self.return_rate:
                continue
            order = (await self._call(http, "GET", f"/orders/{oid}", self.admin)).json()
            delivered = [l for l in order["lines"] if l["delivered_qty"]]
            if not delivered:
                continue
            # Some customers send everything back, most just one item.
            if self.rng.random() < 0.4:
                back = [(l["line_id"], l["delivered_qty"]) for l in delivered]
            else:
                back = [(delivered[0]["line_id"], 1)]
            body: dict[str, Any] = {"lines": [{"line_id": l, "qty": q} for l, q in back], "reason": "did not fit"}
            if self.return_counters and self.rng.random() < self.in_store_return_rate:
                # Returned over a store's counter (BORIS), whichever store the customer walks into.
                body.update(method="in_store", node_id=self.rng.choice(self.return_counters))
            client = self.client_keys[order["channel"]]
            exchange = self.rng.random() < self.exchange_rate
            if exchange:
                # Another item instead (another size or colour: here any SKU, at the price of the one returned).
                body["lines"] = [{**l, "sku": self.rng.choice(demo_skus())} for l in body["lines"]]
                body["advance"] = self.rng.random() < 0.5
                ret = await self._call(http, "POST", f"/orders/{oid}/exchanges", client, json=body)
            else:
                ret = await self._call(http, "POST", f"/orders/{oid}/returns", client, json=body)
            if ret is None or ret.status_code != 201:
                continue
            if exchange:
                self.stats["exchanged_in_advance" if body["advance"] else "exchanged"] += 1
                if body["advance"] and self.rng.random() < self.keep_rate:
                    self.stats["exchange_kept"] += 1  # never sent back: charged at the window's end
                    continue
            rid = ret.json()["return_id"]
            node = (await self._call(http, "GET", f"/returns/{rid}", self.admin)).json()["node_id"]
            await asyncio.sleep(self.rng.uniform(0.5, 2) * self.pace)
            received = [{"line_id": l, "qty": q, "disposition": "sellable" if self.rng.random() < 0.8 else "damaged"}
                        for l, q in back]
            r = await self._call(http, "POST", f"/returns/{rid}/receive", self.partner_keys.get(node, self.admin),
                                 json={"lines": received})
            if r is not None and r.status_code == 200:
                self.stats["returned_in_store" if body.get("method") == "in_store" else "returned_by_post"] += 1

    async def import_files(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Now and then the distributor sends a file of orders (CSV) instead of placing them one by one."""
        while not stop.is_set():
            await asyncio.sleep(20 * self.pace)
            out = io.StringIO()
            w = csv.writer(out)
            w.writerow(CSV_COLUMNS)
            for _ in range(self.rng.randint(2, 4)):
                body = self._b2b({**self._order(), "channel": "b2b-portal"})
                for i, l in enumerate(body["lines"]):
                    address = l["delivery"].get("address")
                    if address is None:
                        break  # a pickup order: not what a distributor's file holds
                    w.writerow([body["external_id"], "b2b-portal", body["customer"]["id"], f"L{i + 1}", l["sku"],
                                l["qty"], l.get("uom", "each"), l["unit_price"], address["postal_code"],
                                "1 Dock Rd", ""])
            r = await self._call(http, "POST", "/orders/import", self.client_keys["b2b-portal"],
                                 content=out.getvalue().encode(), headers={"Content-Type": "text/csv"})
            if r is not None and r.status_code == 200:
                self.stats["imported"] += r.json()["created"]
                self.placed += r.json()["created"]

    async def report(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(10)
            r = await self._call(http, "GET", "/orders?limit=500", self.admin)
            if r is None or r.status_code != 200 or self.console is None:
                continue
            counts = Counter(o["status"] for o in r.json()["orders"])
            self.console.print(f"[dim]demo[/] placed {self.placed}: " +
                               ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30, transport=self.transport) as http:
            await self.setup(http)
            await asyncio.gather(self.place_orders(http, stop), self.play_partners(http, stop), self.report(http, stop),
                                 self.import_files(http, stop), self.play_carriers(http, stop))
