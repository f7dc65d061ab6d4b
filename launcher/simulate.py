"""`nodal simulate`: days of a brand's network driven through the real workflows and the real API, with time skipping.

The stack is embedded and fresh: PostgreSQL (pgserver, a directory of its own), the Temporal dev server with
per-workflow time skipping, a `nodal worker` process, and the API application in this process (called through ASGI,
the same code as over HTTP). Customers place orders through POST /orders; partners accept, reject, pick (sometimes
short), pack and ship through /fulfillments; carriers scan parcels through /carriers/{carrier}/events; customers
return through /orders/{id}/returns. Nothing reaches the database or a workflow another way.

Time: every order runs on its own virtual clock (Temporal's time skipping is per workflow; a fulfillment starts at
its order's virtual time). The simulator keeps an order and its open fulfillments in step, moving them together to
the moment of the next thing that happens to the order: a partner's answer 40 minutes after release, a parcel's
delivery three days after it shipped, an acceptance timer running out. So an order's days pass in a second or two.
What the clocks cannot do is start a workflow at a chosen virtual time: every order's clock starts at the wall
clock of the run. The calendar of the scenario (weekdays, the promotion peak) therefore sets how many orders are
placed and compete for stock each simulated day, while each node's daily capacity counts all the run's work against
one calendar day: the simulator gives each node its daily capacity times the days simulated.

NODAL_SIM_DEBUG=1 prints why each late order was late (its routing decisions and fulfillments), why an order still
waits at the end, and where the wall time went (kpis.json "notes").
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import httpx

from launcher.seed import DEMO_AREAS, DEMO_NODES, demo_skus

TERMINAL_ORDER = {"delivered", "cancelled", "rejected", "returned", "partially_returned"}
OPEN_FULFILLMENT = {"released", "accepted", "picked", "packed", "shipped"}
FAILED_FULFILLMENT = {"rejected", "timed_out", "cancelled", "exception"}


# ---------------------------------------------------------------- the scenario
def default_scenario() -> dict[str, Any]:
    """The demo network (2 DCs, 8 stores, 2 distributors) and two drop-ship vendors for bulky goods; 10% partner
    rejections, 5% short picks, stochastic transit, returns. A network file (--network) replaces any section."""
    rng = random.Random(11)
    nodes = []
    for node_id, name, kind, lat, lon, postal, tz, caps in DEMO_NODES:
        nodes.append({"node_id": node_id, "name": name, "type": kind, "lat": lat, "lon": lon, "postal_code": postal,
                      "timezone": tz, "capabilities": [c for c in caps if c in ("ship", "returns")],
                      "capacity": {"units_per_day": 1500 if kind == "dc" else 60 if kind == "store" else 200},
                      "handling_cost": "0.35" if kind == "dc" else "1.25" if kind == "store" else "0.60",
                      "processing_time": "4h" if kind == "dc" else "1h", "cutoff_time": "17:00" if kind == "dc"
                      else "15:00"})
    for node_id, name, lat, lon, postal, tz in (("DSV-OUTDOOR", "Drop-ship Outdoor Co (Portland)", 45.5152, -122.6784,
                                                 "97204", "America/Los_Angeles"),
                                                ("DSV-FOOTWEAR", "Drop-ship Footwear Inc (Memphis)", 35.1495, -90.049,
                                                 "38103", "America/Chicago")):
        nodes.append({"node_id": node_id, "name": name, "type": "dropship", "lat": lat, "lon": lon,
                      "postal_code": postal, "timezone": tz, "capabilities": ["ship"],
                      "capacity": {"units_per_day": 300}, "handling_cost": "2.00", "processing_time": "1d",
                      "cutoff_time": "12:00"})
    stock = []
    for n in nodes:
        for sku in demo_skus():
            category = sku.split("-")[1].lower()
            if n["type"] == "dc":
                qty = rng.randint(60, 140) if category not in ("jacket", "sneaker") else rng.randint(5, 15)
            elif n["type"] == "dropship":
                bulky = {"DSV-OUTDOOR": "jacket", "DSV-FOOTWEAR": "sneaker"}[n["node_id"]]
                qty = 500 if category == bulky else 0
            elif n["type"] == "store":
                qty = rng.randint(2, 10) if rng.random() < 0.6 else 0
            else:
                qty = rng.randint(10, 40)
            if qty:
                stock.append({"node_id": n["node_id"], "sku": sku, "qty": qty})
    return {
        "network": {
            "nodes": nodes,
            "service_areas": [{"postal_code": pc, "lat": lat, "lon": lon,
                               "nodes": [{"node_id": s, "priority": i + 1} for i, s in enumerate(served)]}
                              for pc, (lat, lon, served) in DEMO_AREAS.items()],
            "skus": [{"sku": s, "name": s.replace("SKU-", "").replace("-", " ").title(),
                      "weight_kg": round(rng.uniform(0.2, 2.5), 2), "category": s.split("-")[1].lower()}
                     for s in demo_skus()],
            "stock": stock,
            # Order-up-to levels the DCs and vendors are replenished to every morning (stores are not).
            "replenish": {"dc": 100, "dropship": 500, "distributor": 30},
        },
        "demand": {
            "orders_per_day": 45, "weekday_factors": [1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.15],  # Monday first
            "first_weekday": 0,
            "peak": {"day": 9, "days": 2, "factor": 2.2},  # a promotion on the 10th and 11th day
            "channels": {"web": 0.7, "marketplace": 0.3}, "express_share": 0.2, "lines": [1, 3], "qty": [1, 2],
            "postal_codes": {pc: (3 if served else 1) for pc, (_, _, served) in DEMO_AREAS.items()},
            "cancel_in_remorse": 0.004,
        },
        "partners": {"reject_rate": 0.10, "ignore_rate": 0.01, "accept_minutes": [5, 90], "short_pick_rate": 0.05,
                     "late_ship_rate": 0.03, "pick_minutes": [20, 150]},
        # Transit against the zone's days, as bench/promise_accuracy.py measures the promise against.
        "carriers": {"transit_days_noise": {"-1": 0.04, "0": 0.84, "1": 0.10, "2": 0.02}, "lost_rate": 0.003},
        "returns": {"rate": 0.08, "after_days": [2, 12]},
    }


def load_scenario(path: Optional[Path]) -> dict[str, Any]:
    scenario = default_scenario()
    if path is not None:
        given = json.loads(path.read_text())
        unknown = set(given) - set(scenario)
        if unknown:
            raise SystemExit(f"{path}: unknown sections {sorted(unknown)} (known: {sorted(scenario)})")
        scenario.update(given)
    return scenario


# ---------------------------------------------------------------- what became of each order
@dataclass
class Outcome:
    order_id: str
    day: int
    channel: str
    status: str = "placed"
    first_promise: Optional[str] = None
    delivered_at: Optional[str] = None
    on_time: Optional[bool] = None
    complete: bool = False
    slack_days: Optional[float] = None
    reroutes: int = 0
    fulfillments: int = 0
    split: bool = False
    cost: Optional[float] = None
    returned: bool = False
    cancel_cause: Optional[str] = None
    events: Counter = field(default_factory=Counter)
    unfinished: Optional[str] = None


class Simulation:
    """Days of orders through the API, each order's life on its own clock (see the module's docstring)."""

    def __init__(self, http: httpx.AsyncClient, env, scenario: dict[str, Any], days: int, seed: int, settings,
                 concurrency: int = 24, progress=None):
        self.http, self.env, self.s, self.days, self.settings = http, env, scenario, days, settings
        self.rng = random.Random(seed)
        self.seed = seed
        self.gate = asyncio.Semaphore(concurrency)
        self.progress = progress
        self.keys: dict[str, str] = {}
        self.outcomes: list[Outcome] = []
        self.stats: Counter = Counter()
        self.timing: Counter = Counter()  # seconds spent, summed over orders: where the wall time goes
        self.replenishments = 0
        self.nodes = {n["node_id"]: n for n in scenario["network"]["nodes"]}
        self.postal = {a["postal_code"]: (a["lat"], a["lon"]) for a in scenario["network"]["service_areas"]}

    # ------------------------------------------------------------ calls
    async def call(self, method: str, path: str, key: str, expect=(200, 201), **kw) -> Optional[dict]:
        for attempt in range(5):
            started = time.monotonic()
            r = await self.http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)
            self.timing[f"{method} {path.split('/')[1]}"] += time.monotonic() - started
            if r.status_code in (429, 503) and attempt < 4:
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if r.status_code in expect:
                return r.json()
            self.stats[f"http_{r.status_code}:{method} {path.split('/')[1]}"] += 1
            return None
        return None

    async def setup(self, admin: str) -> None:
        net = self.s["network"]
        for n in net["nodes"]:
            body = {k: v for k, v in n.items() if k != "node_id"}
            cap = dict(body.get("capacity") or {})
            for k in ("units_per_day", "orders_per_day"):  # one calendar day holds the whole run (docstring)
                if cap.get(k):
                    cap[k] = cap[k] * self.days
            body["capacity"] = cap
            assert await self.call("PUT", f"/nodes/{n['node_id']}", admin, json=body), f"node {n['node_id']}"
        assert await self.call("PUT", "/service-areas", admin, json=net["service_areas"])
        for sku in net["skus"]:
            assert await self.call("PUT", f"/skus/{sku['sku']}", admin, json={k: v for k, v in sku.items() if k != "sku"})
        adjustments = [{"event_id": f"sim:stock:{x['node_id']}:{x['sku']}", "node_id": x["node_id"], "sku": x["sku"],
                        "delta": x["qty"], "reason": "initial_stock"} for x in net["stock"]]
        for i in range(0, len(adjustments), 500):
            assert await self.call("POST", "/inventory/adjustments", admin, json=adjustments[i:i + 500])
        self.admin = admin
        for channel in self.s["demand"]["channels"]:
            self.keys[f"client:{channel}"] = (await self.call("POST", "/api-keys", admin, json={
                "role": "client", "channel": channel, "label": "simulated customers"}))["key"]
        for n in net["nodes"]:
            self.keys[f"partner:{n['node_id']}"] = (await self.call("POST", "/api-keys", admin, json={
                "role": "partner", "node_id": n["node_id"], "label": "simulated partner"}))["key"]
        for c in (await self.call("GET", "/carriers", admin))["carriers"]:
            self.keys[f"carrier:{c['carrier']}"] = (await self.call("POST", "/api-keys", admin, json={
                "role": "carrier", "carrier": c["carrier"], "label": "simulated carrier"}))["key"]

    async def replenish(self, day: int) -> None:
        """Every morning the DCs and vendors are brought back up to their order-up-to level."""
        levels = self.s["network"].get("replenish", {})
        kinds = {n["node_id"]: n["type"] for n in self.s["network"]["nodes"]}
        carried = {(x["node_id"], x["sku"]) for x in self.s["network"]["stock"]}
        adjustments = []
        for node_id, kind in kinds.items():
            level = levels.get(kind)
            if not level:
                continue
            view = await self.call("GET", f"/inventory/{node_id}", self.admin)
            for p in (view or {}).get("items", []):
                if (node_id, p["sku"]) in carried and p["on_hand"] < level:
                    adjustments.append({"event_id": f"sim:replenish:{day}:{node_id}:{p['sku']}", "node_id": node_id,
                                        "sku": p["sku"], "delta": level - p["on_hand"], "reason": "receipt"})
        for i in range(0, len(adjustments), 500):
            await self.call("POST", "/inventory/adjustments", self.admin, json=adjustments[i:i + 500])
        self.stats["replenished_units"] += sum(a["delta"] for a in adjustments)
        self.replenishments += 1

    def arrival(self, f: dict, shipped: datetime, body: dict, r: random.Random) -> datetime:
        """When a parcel handed to the carrier at ``shipped`` is delivered: the service's zone days for the
        distance plus the scenario's noise, on the carrier's delivery days, some time in that day's afternoon."""
        from promise.carriers import DEFAULT_CALENDAR, SERVICES
        from promise.dates import delivered_on
        from routing.geo import haversine_km
        from routing.model import NodeInfo

        node = self.nodes[f["node_id"]]
        lat, lon = self.postal[body["lines"][0]["delivery"]["address"]["postal_code"]]
        km = haversine_km(node["lat"], node["lon"], lat, lon)
        method = f.get("method") or body["lines"][0]["delivery"]["method"]
        services = [s for m, group in SERVICES.items() if m.value == method for s in group]
        service = next((s for s in services if s.carrier == f.get("carrier")), services[0])
        noise = self.s["carriers"]["transit_days_noise"]
        extra = r.choices([int(k) for k in noise], weights=list(noise.values()))[0]
        info = NodeInfo(node["node_id"], node["type"], node["lat"], node["lon"], frozenset({"ship"}),
                        timezone=node.get("timezone", "UTC"))
        day = delivered_on(service, info, shipped, km, DEFAULT_CALENDAR, days=max(service.transit_days(km) + extra, 1))
        return datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=r.uniform(13, 21))

    # ------------------------------------------------------------ demand
    def orders_on(self, day: int) -> int:
        d = self.s["demand"]
        weekday = (d.get("first_weekday", 0) + day) % 7  # the first simulated day is a Monday unless it says
        mean = d["orders_per_day"] * d["weekday_factors"][weekday]
        peak = d.get("peak") or {}
        if peak and peak["day"] <= day < peak["day"] + peak.get("days", 1):
            mean *= peak["factor"]
        # Poisson, by its normal approximation (the mean is tens).
        return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))

    def order_body(self) -> dict[str, Any]:
        d = self.s["demand"]
        channel = self.rng.choices(list(d["channels"]), weights=list(d["channels"].values()))[0]
        postal = self.rng.choices(list(d["postal_codes"]), weights=list(d["postal_codes"].values()))[0]
        method = "ship_express" if self.rng.random() < d["express_share"] else "ship_standard"
        skus = self.rng.sample([s["sku"] for s in self.s["network"]["skus"]], self.rng.randint(*d["lines"]))
        return {"external_id": f"sim-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}", "channel": channel,
                "customer": {"id": f"cust-{self.rng.randint(1, 5000)}", "email": "customer@example.com"},
                "lines": [{"sku": s, "qty": self.rng.randint(*d["qty"]), "unit_price": f"{self.rng.uniform(9, 120):.2f}",
                           "delivery": {"method": method, "address": {"postal_code": postal, "line1": "1 Main St"}}}
                          for s in skus]}

    # ------------------------------------------------------------ the run
    async def run(self) -> None:
        tasks = []
        for day in range(self.days):
            await self.replenish(day)
            n = self.orders_on(day)
            if self.progress:
                self.progress(day=day, planned=n)
            for _ in range(n):
                await self.gate.acquire()
                rng = random.Random(self.rng.getrandbits(64))  # each order's fate its own, whatever the interleaving
                body = self.order_body()
                tasks.append(asyncio.create_task(self._order(day, body, rng)))
        # The last orders still wait for stock: the DCs are replenished again while any order is open.
        extra = 0
        while True:
            done, pending = await asyncio.wait(tasks, timeout=3)
            if not pending:
                break
            extra += 1
            await self.replenish(self.days + extra)
        await asyncio.gather(*tasks)

    async def _order(self, day: int, body: dict, rng: random.Random) -> None:
        try:
            out = Outcome(order_id="", day=day, channel=body["channel"])
            try:
                await asyncio.wait_for(OrderLife(self, body, rng, out).run(), timeout=180)
            except asyncio.TimeoutError:
                out.unfinished = out.unfinished or "ran out of wall time (180 s)"
            if out.order_id:
                self.outcomes.append(out)
            if self.progress:
                self.progress(done=out)
        finally:
            self.gate.release()


class OrderLife:
    """One order from placement to delivery (and its return). Each of its workflows keeps its own virtual clock,
    moved ahead to the moment of the next thing that happens to it (launcher.skipping.skip). The order's clock stands
    still while it waits on a fulfillment (the server does not skip a workflow with a running child), so a
    fulfillment that replaces a rejected or timed-out one starts where the order's clock is: the time the failed
    attempt took (minutes to the 2-hour acceptance timeout) is not counted against the replacement."""

    def __init__(self, sim: Simulation, body: dict, rng: random.Random, out: Outcome):
        self.sim, self.body, self.rng, self.out = sim, body, rng, out
        self.p, self.c = sim.s["partners"], sim.s["carriers"]
        self.clock: dict[str, datetime] = {}  # workflow id → its virtual time, as far as this has moved it
        self.plans: dict[str, list[tuple[datetime, str]]] = {}  # fulfillment → its partner's and carrier's steps
        self.view: dict = {}

    # ------------------------------------------------------------ virtual time
    async def move(self, workflow_id: str, to: datetime, why: str = "") -> None:
        from launcher.skipping import skip

        started = time.monotonic()
        try:
            self.clock[workflow_id] = await skip(self.sim.env, workflow_id, until=to, timeout=15)
        except Exception as e:  # a workflow that ended meanwhile, or one that cannot skip: note it, go on
            if "not found" not in str(e).lower() and "completed" not in str(e).lower():
                self.sim.stats[f"skip_error:{type(e).__name__}"] += 1
                if os.environ.get("NODAL_SIM_DEBUG"):
                    print("skip error", e, file=sys.stderr)
            self.clock[workflow_id] = max(self.clock.get(workflow_id, to), to)
        self.sim.timing["skip"] += time.monotonic() - started
        if os.environ.get("NODAL_SIM_DEBUG"):
            self.sim.timing[f"skip:{why}"] += time.monotonic() - started
            self.sim.stats[f"skips:{why}"] += 1

    async def refresh(self, until=None, timeout: float = 15.0, what: str = "") -> dict:
        """The order as the read model has it; with ``until``, once it says so (the read model follows the
        workflows by a few milliseconds)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            view = await self.sim.call("GET", f"/orders/{self.out.order_id}", self.sim.admin)
            if view is not None:
                self.view = view
                if until is None or until(view):
                    self.sim.timing["read_model"] += time.monotonic() - started
                    return view
            if time.monotonic() > deadline:
                self.sim.stats[f"read_model_waits_timed_out:{what}"] += 1
                self.sim.timing["read_model"] += time.monotonic() - started
                return self.view
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------ the life
    async def run(self) -> None:
        sim, out = self.sim, self.out
        client = sim.keys[f"client:{self.body['channel']}"]
        placed = await sim.call("POST", "/orders", client, json=self.body)
        if placed is None:
            sim.stats["placement_refused"] += 1
            return
        out.order_id = placed["order_id"]
        out.status = placed["status"]
        created = _at((await self.refresh())["created_at"])
        remorse = sim.settings.remorse_window
        if self.rng.random() < sim.s["demand"]["cancel_in_remorse"]:
            await self.move(out.order_id, created + remorse * self.rng.uniform(0.1, 0.9))
            await sim.call("POST", f"/orders/{out.order_id}/cancel", client,
                           json={"reason": "customer changed their mind"})
            await self.finish()
            return
        # To the remorse window's end exactly: once it releases, the order waits on its fulfillments and its clock
        # no longer skips (a step past the end would be spent at wall-clock pace).
        waiting = next((t for t in self.view["timeline"] if t["event"] == "awaiting_release"), None)
        until = _at(waiting["detail"]["until"]) if waiting and waiting["detail"].get("until") else created + remorse
        await self.move(out.order_id, until, "remorse")
        await self.refresh(lambda v: v["status"] != "awaiting_release" and (
            v["fulfillments"] or v["status"] in TERMINAL_ORDER or v["status"] == "backordered"), what="release")
        for _ in range(80):
            if self.view["status"] in TERMINAL_ORDER:
                break
            for f in self.view["fulfillments"]:
                if f["fulfillment_id"] not in self.plans and f["status"] in OPEN_FULFILLMENT:
                    self.plans[f["fulfillment_id"]] = await self.plan(f)
            due = [(steps[0][0], fid) for fid, steps in self.plans.items() if steps]
            if not due:
                # Units wait for stock (backordered, or the rest of a partly shipped order): the next replenishment
                # wakes the order (it comes in wall time, every morning of the run and then while orders wait).
                known = {f["fulfillment_id"] for f in self.view["fulfillments"]}
                until = sim.replenishments + 2  # a whole replenishment and the wake-up after it
                await self.refresh(lambda v: sim.replenishments >= until or v["status"] in TERMINAL_ORDER or any(
                    f["fulfillment_id"] not in known and f["status"] in OPEN_FULFILLMENT for f in v["fulfillments"]),
                    timeout=600)
                if self.view["status"] not in TERMINAL_ORDER and not any(
                        f["fulfillment_id"] not in known for f in self.view["fulfillments"]):
                    out.unfinished = f"{self.view['status']}: waiting for stock at the end of the run"
                    if os.environ.get("NODAL_SIM_DEBUG"):
                        v = self.view
                        print("WAITING", out.order_id, [(l["line_id"], l["sku"], l["eaches"], l["status"],
                                                         l["shipped_qty"], l["cancelled_qty"]) for l in v["lines"]],
                              [(f["fulfillment_id"], f["node_id"], f["status"], [(x["line_id"], x["qty"]) for x in f["lines"]])
                               for f in v["fulfillments"]],
                              [(t["event"], {k: x for k, x in t["detail"].items() if k != "candidates"})
                               for t in v["timeline"][-5:]], file=sys.stderr)
                    break
                continue
            at, fid = min(due)
            _, action = self.plans[fid].pop(0)
            if action != "ship":  # the ship step moves the clock itself, against the ship-by
                await self.move(fid, at, action)
            await self.act(fid, action)
        await self.finish()

    async def plan(self, f: dict) -> list[tuple[datetime, str]]:
        """What the partner will do with this fulfillment, and when (on its own clock)."""
        from launcher.skipping import skip

        p, r = self.p, self.rng
        fid = f["fulfillment_id"]
        t = self.clock[fid] = await skip(self.sim.env, fid, step=timedelta(0))  # where its clock starts
        accept_timeout = self.sim.settings.accept_timeout
        roll = r.random()
        if roll < p["reject_rate"]:
            return [(t + timedelta(minutes=r.uniform(*p["accept_minutes"])), "reject")]
        if roll < p["reject_rate"] + p["ignore_rate"]:
            return [(t + accept_timeout + timedelta(minutes=1), "timeout")]
        steps = []
        t += timedelta(minutes=min(r.uniform(*p["accept_minutes"]), accept_timeout.total_seconds() / 60 - 5))
        steps.append((t, "accept"))
        t += timedelta(minutes=r.uniform(*p["pick_minutes"]))
        steps.append((t, "short_pick" if r.random() < p["short_pick_rate"] else "pick"))
        t += timedelta(minutes=r.uniform(5, 30))
        steps.append((t, "pack"))
        steps.append((t, "ship"))  # when it really leaves is worked out against the ship-by
        return steps

    async def act(self, fid: str, action: str) -> None:
        sim = self.sim
        f = next(x for x in self.view["fulfillments"] if x["fulfillment_id"] == fid)
        key = sim.keys.get(f"partner:{f['node_id']}", sim.admin)
        path = f"/fulfillments/{fid}"
        self.out.events[action] += 1
        if action == "reject":
            await sim.call("POST", f"{path}/reject", key, json={"reason": self.rng.choice(
                ["stock damaged", "cannot find the item", "short staffed"])})
            await self.after_failure(fid)
        elif action == "timeout":
            await self.after_failure(fid)  # the acceptance timer ran out while its clock moved
        elif action == "accept":
            await sim.call("POST", f"{path}/accept", key)
        elif action in ("pick", "short_pick"):
            lines = [{"line_id": x["line_id"], "qty": x["qty"]} for x in f["lines"]]
            if action == "short_pick":
                lines[0]["qty"] -= 1
            await sim.call("POST", f"{path}/pick", key, json={"lines": lines})
            if action == "short_pick":
                await self.after_failure(fid, short=True)
        elif action == "pack":
            await sim.call("POST", f"{path}/pack", key)
        elif action == "ship":
            await self.ship(f, key)
        else:  # in_transit, deliver, lost: the carrier's scans
            await self.scan(f, action)

    async def ship(self, f: dict, key: str) -> None:
        """On time (before the ship-by) or, for a share of parcels, late; then the carrier's transit."""
        p, r = self.p, self.rng
        fid = f["fulfillment_id"]
        ship_by = _at(f.get("ship_by"))
        now = self.clock[fid]
        if ship_by is not None and r.random() < p["late_ship_rate"]:
            when = max(now, ship_by + timedelta(hours=r.uniform(2, 30)))
            self.out.events["late_ship"] += 1
        elif ship_by is not None and ship_by - timedelta(minutes=10) > now:
            when = now + (ship_by - timedelta(minutes=10) - now) * r.uniform(0.0, 0.6)
        else:
            when = now
        await self.move(fid, when, "ship")
        if await self.sim.call("POST", f"/fulfillments/{fid}/ship", key, json={}) is None:
            self.plans.pop(fid, None)  # it was moved or cancelled meanwhile (a 409): nothing left to ship
            return
        shipped = await self.refresh(lambda v: _status(v, fid) in ("shipped", "delivered"), what="shipped")
        f = next(x for x in shipped["fulfillments"] if x["fulfillment_id"] == fid)
        # The carrier's service and zone days are what the promise counted on (promise.carriers); reality is
        # that plus noise, counted on the carrier's delivery days from the day it really left.
        arrive = self.sim.arrival(f, self.clock[fid], self.body, r)
        left = self.clock[fid]
        self.plans[fid] = [(left + timedelta(hours=6), "in_transit"),
                           (arrive, "lost" if r.random() < self.c["lost_rate"] else "deliver")]

    async def scan(self, f: dict, action: str) -> None:
        carrier, tracking = f.get("carrier"), f.get("tracking")
        key = self.sim.keys.get(f"carrier:{carrier}")
        fid = f["fulfillment_id"]
        if key is None or not tracking:
            if action == "deliver":  # the node's own van: the node says it was delivered
                await self.sim.call("POST", f"/fulfillments/{fid}/deliver",
                                    self.sim.keys.get(f"partner:{f['node_id']}", self.sim.admin))
                await self.refresh(lambda v: _status(v, fid) == "delivered")
            return
        event = {"in_transit": "in_transit", "deliver": "delivered", "lost": "exception"}[action]
        body = {"tracking": tracking, "event": event, "at": self.clock[fid].isoformat(),
                "detail": {"location": "hub"}, **({"reason": "lost"} if action == "lost" else {})}
        await self.sim.call("POST", f"/carriers/{carrier}/events", key, json=[body])
        if action == "deliver":
            await self.refresh(lambda v: _status(v, fid) == "delivered")
        elif action == "lost":
            await self.after_failure(fid)

    async def after_failure(self, fid: str, short: bool = False) -> None:
        """A rejection, a timeout, a short pick or a lost parcel: the order re-sources what is missing (or
        backorders or cancels it). Wait until the read model shows what it did."""
        before = {f["fulfillment_id"] for f in self.view["fulfillments"]}
        seen = len(self.view["timeline"])

        def settled(v):
            if v["status"] in TERMINAL_ORDER or v["status"] == "backordered":
                return True
            later = v["timeline"][seen:]
            if any(t["event"] in ("backordered", "unavailable_cancelled", "lines_cancelled") for t in later):
                return True  # nothing to release now: the units wait (or are gone)
            new = {f["fulfillment_id"] for f in v["fulfillments"]} - before
            return bool(new) and (short or _status(v, fid) in FAILED_FULFILLMENT)
        await self.refresh(settled, what="after a failure")
        if not short:
            self.plans.pop(fid, None)

    async def finish(self) -> None:
        def closed(v):  # the order closes a moment after its last fulfillment (its own record follows)
            return v["status"] in TERMINAL_ORDER or v["status"] == "backordered" or any(
                f["status"] in OPEN_FULFILLMENT for f in v["fulfillments"])
        v = await self.refresh(None if self.out.unfinished else closed, timeout=10, what="order closing")
        out, sim = self.out, self.sim
        out.status = v["status"]
        kept = [f for f in v["fulfillments"] if f["status"] not in FAILED_FULFILLMENT and f["kind"] != "transfer"]
        out.fulfillments, out.split = len(v["fulfillments"]), len(kept) > 1
        out.reroutes = sum(1 for t in v["timeline"] if t["event"] == "routing_decision"
                           and t["detail"].get("reason") not in ("initial", None))
        initial = [t for t in v["timeline"] if t["event"] == "routing_decision" and t["detail"].get("reason") == "initial"
                   and t["detail"].get("feasible") and t["detail"].get("attempt") == 1]
        out.cost = sum(float(t["detail"]["total_cost"]) for t in initial) if initial else None
        promised = [t for t in v["timeline"] if t["event"] == "awaiting_release"]
        first = _at(promised[0]["detail"].get("promised_by")) if promised else _at(v.get("promised_by"))
        out.first_promise = first.isoformat() if first else None
        delivered = [_at(f["delivered_at"]) for f in v["fulfillments"] if f.get("delivered_at")]
        if v["status"] in ("delivered", "partially_returned", "returned") and delivered:
            last = max(delivered)
            out.delivered_at = last.isoformat()
            out.complete = all(line["delivered_qty"] >= line["eaches"] - line["cancelled_qty"] for line in v["lines"])
            if first:
                out.on_time = last <= first
                if not out.on_time and os.environ.get("NODAL_SIM_DEBUG"):
                    for t in v["timeline"]:
                        if t["event"] in ("routing_decision", "repromised", "fulfillment_released", "rejected"):
                            d = t["detail"]
                            print("LATE", out.order_id, t["at"], t["event"], d.get("reason"),
                                  [(c["node_id"], c["outcome"], c["reason"]) for c in d.get("candidates", [])
                                   if isinstance(c, dict) and c["outcome"] != "ineligible"]
                                  if isinstance(d.get("candidates"), list) else d.get("node_id", ""),
                                  file=sys.stderr)
                    for f in v["fulfillments"]:
                        print("LATE", out.order_id, f["fulfillment_id"], f["node_id"], f["status"], f["ship_by"],
                              f.get("promised_by"), f.get("delivered_at"), f.get("carrier"), file=sys.stderr)
                out.slack_days = (first.date() - last.date()).days  # promised day - delivered day (UTC)
        if v["status"] == "cancelled":
            reasons = [t["detail"].get("reason", "") for t in v["timeline"] if t["event"] in ("cancelled", "lines_cancelled",
                                                                                              "unavailable_cancelled")]
            from activities.metrics import cause
            out.cancel_cause = cause(reasons[-1] if reasons else "")
        if v["status"] == "delivered" and self.rng.random() < sim.s["returns"]["rate"]:
            await self.give_back(v)

    async def give_back(self, v: dict) -> None:
        """The customer sends one item back some days later; the node receives it."""
        line = next((x for x in v["lines"] if x["delivered_qty"]), None)
        if line is None:
            return
        r = self.rng
        client = self.sim.keys[f"client:{v['channel']}"]
        delivered = max(_at(f["delivered_at"]) for f in v["fulfillments"] if f.get("delivered_at"))
        await self.move(v["order_id"], delivered + timedelta(days=r.uniform(*self.sim.s["returns"]["after_days"])))
        ret = await self.sim.call("POST", f"/orders/{v['order_id']}/returns", client, json={
            "lines": [{"line_id": line["line_id"], "qty": 1}], "reason": "did not fit"})
        if ret is None:
            return
        self.out.returned = True
        got = await self.sim.call("GET", f"/returns/{ret['return_id']}", self.sim.admin)
        node = (got or {}).get("node_id")
        await self.sim.call("POST", f"/returns/{ret['return_id']}/receive",
                            self.sim.keys.get(f"partner:{node}", self.sim.admin),
                            json={"lines": [{"line_id": line["line_id"], "qty": 1,
                                             "disposition": "sellable" if r.random() < 0.85 else "damaged"}]})


def _at(value: Any) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


def _status(view: dict, fid: str) -> Optional[str]:
    return next((f["status"] for f in view["fulfillments"] if f["fulfillment_id"] == fid), None)


# ---------------------------------------------------------------- the figures
def summarize(outcomes: list[Outcome], kpis: dict, nodes: list[dict], scenario: dict, days: int, seed: int,
              wall_s: float, stats: Counter) -> dict[str, Any]:
    finished = [o for o in outcomes if o.status in TERMINAL_ORDER]
    delivered = [o for o in outcomes if o.delivered_at]
    cancelled = [o for o in outcomes if o.status == "cancelled"]
    closed = len(delivered) + len(cancelled)
    slack = [o.slack_days for o in delivered if o.slack_days is not None]
    per_day = []
    for day in range(days):
        mine = [o for o in outcomes if o.day == day]
        got = [o for o in mine if o.delivered_at]
        gone = [o for o in mine if o.status == "cancelled"]
        per_day.append({"day": day + 1, "orders": len(mine), "delivered": len(got), "cancelled": len(gone),
                        "fulfillment_rate": _ratio(sum(1 for o in got if o.complete and o.on_time), len(got) + len(gone)),
                        "promise_kept_rate": _ratio(sum(1 for o in got if o.on_time), len(got)),
                        "split_rate": _ratio(sum(1 for o in mine if o.split), len(mine)),
                        "reroutes_per_order": _ratio(sum(o.reroutes for o in mine), len(mine))})
    causes = Counter(o.cancel_cause or "requested" for o in cancelled)
    return {
        "scenario": {"days": days, "seed": seed, "orders_per_day": scenario["demand"]["orders_per_day"],
                     "peak": scenario["demand"].get("peak"), "partners": scenario["partners"],
                     "carriers": scenario["carriers"], "returns": scenario["returns"],
                     "nodes": len(scenario["network"]["nodes"])},
        "orders": len(outcomes),
        "finished": len(finished),
        "unfinished": Counter(o.unfinished or o.status for o in outcomes if o.status not in TERMINAL_ORDER),
        "fulfillment_rate": _ratio(sum(1 for o in delivered if o.complete and o.on_time), closed),
        "cancellation_rate": _ratio(len(cancelled), len(outcomes)),
        "cancellation_by_cause": {k: _ratio(v, len(outcomes)) for k, v in sorted(causes.items())},
        "promise_kept_rate": _ratio(sum(1 for o in delivered if o.on_time), len(delivered)),
        "median_promise_slack_days": round(statistics.median(slack), 2) if slack else None,
        "split_rate": _ratio(sum(1 for o in outcomes if o.split), len(outcomes)),
        "cost_per_order": round(statistics.mean([o.cost for o in outcomes if o.cost is not None]), 2)
        if any(o.cost is not None for o in outcomes) else None,
        "reroutes_per_order": _ratio(sum(o.reroutes for o in outcomes), len(outcomes)),
        "returns": sum(1 for o in outcomes if o.returned),
        "partner_events": dict(sum((o.events for o in outcomes), Counter())),
        "kpis_endpoint": {k: kpis.get(k) for k in ("orders", "order_fulfillment_rate", "cancellation_rate",
                                                    "cancellation_by_cause", "on_time_rate", "split_rate",
                                                    "median_promise_slack_days", "cost_per_order")},
        "scorecards": [{"node_id": n["node_id"], "type": n["type"], **{k: (n.get("scorecard") or {}).get(k) for k in (
            "fulfillments", "acceptance_rate", "fill_rate", "on_time_ship_rate", "return_rate",
            "avg_minutes_to_accept")}} for n in nodes],
        "per_day": per_day,
        "goals": {"fulfillment_rate": ">= 0.98", "cancellation_rate": "< 0.01", "promise_kept_rate": ">= 0.95",
                  "median_promise_slack_days": "<= 1"},
        "wall_seconds": round(wall_s, 1),
        "notes": dict(stats),
    }


def _ratio(a: float, b: float) -> Optional[float]:
    return round(a / b, 4) if b else None


def goals_met(k: dict) -> dict[str, bool]:
    def ok(v, test):
        return v is not None and test(v)
    return {"fulfillment_rate": ok(k["fulfillment_rate"], lambda v: v >= 0.98),
            "cancellation_rate": ok(k["cancellation_rate"], lambda v: v < 0.01),
            "promise_kept_rate": ok(k["promise_kept_rate"], lambda v: v >= 0.95),
            "median_promise_slack_days": ok(k["median_promise_slack_days"], lambda v: v <= 1)}


def write_report(out: Path, k: dict, outcomes: list[Outcome]) -> None:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out.mkdir(parents=True, exist_ok=True)
    (out / "kpis.json").write_text(json.dumps(k, indent=2, default=str) + "\n")
    with (out / "orders.csv").open("w") as fh:
        fh.write("order_id,day,channel,status,first_promise,delivered_at,on_time,complete,slack_days,reroutes,"
                 "fulfillments,split,cost,returned,cancel_cause,unfinished\n")
        for o in sorted(outcomes, key=lambda o: (o.day, o.order_id)):
            fh.write(",".join("" if v is None else str(v) for v in (
                o.order_id, o.day + 1, o.channel, o.status, o.first_promise, o.delivered_at, o.on_time, o.complete,
                o.slack_days, o.reroutes, o.fulfillments, o.split, o.cost, o.returned, o.cancel_cause,
                o.unfinished)) + "\n")
    root = Path(__file__).resolve().parents[1]
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
    chart = (root / "api" / "static" / "console" / "vendor" / "chart.umd.min.js").read_text()
    html = env.get_template("simulation.html").render(k=k, met=goals_met(k), chart_js=chart,
                                                      per_day=json.dumps(k["per_day"]))
    (out / "report.html").write_text(html)


# ---------------------------------------------------------------- the embedded stack
async def simulate(days: int, seed: int, network: Optional[Path], out: Path, concurrency: int = 24,
                   workers: int = 1, console=None) -> dict[str, Any]:
    from nodal.db import Database, embedded_postgres, make_engine
    from nodal.migrate import upgrade
    from nodal.settings import Settings
    from launcher.skipping import start_skipping_server
    from api.app import create_app
    from api.auth import ensure_admin_key

    scenario = load_scenario(network)
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="nodal-sim-"))
    admin = "sim-admin-" + uuid.uuid4().hex
    pg = embedded_postgres(home / "pg", keep_running=False)
    procs: list[subprocess.Popen] = []
    env = None
    try:
        url = pg.get_uri()
        upgrade(url)
        settings = Settings(database_url=url, admin_key=admin, task_queue="nodal-sim", adapter_latency_ms=1,
                            track_per_minute=0, rate_limit_per_second=0, rate_limit_per_address=0, home=home,
                            log_level="WARNING")
        payloads = make_engine(url, pool_size=2, max_overflow=4)
        env = await start_skipping_server(settings, payloads)
        address = env.client.service_client.config.target_host
        worker_env = {**os.environ, "NODAL_DATABASE_URL": url, "NODAL_TEMPORAL_ADDRESS": address,
                      "NODAL_TASK_QUEUE": settings.task_queue, "NODAL_ADMIN_KEY": admin, "NODAL_LOG_JSON": "true",
                      "NODAL_ADAPTER_LATENCY_MS": "1", "NODAL_HOME": str(home), "NODAL_LOG_LEVEL": "WARNING"}
        nodal = str(Path(sys.executable).parent / "nodal")
        for i in range(workers):
            log = open(home / f"worker-{i}.log", "ab")
            procs.append(subprocess.Popen([nodal, "worker"], env=worker_env, stdout=log, stderr=log,
                                          start_new_session=True))
        db = Database(url)
        await ensure_admin_key(db, admin)
        app = create_app(settings, db=db, temporal=env.client)
        async with app.router.lifespan_context(app):
            app.state.db, app.state.temporal = db, env.client
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal",
                                         timeout=60) as http:
                progress = _Progress(console, days)
                sim = Simulation(http, env, scenario, days, seed, settings, concurrency=concurrency,
                                 progress=progress)
                await sim.setup(admin)
                with progress:
                    await sim.run()
                kpis = await sim.call("GET", "/kpis", admin) or {}
                nodes = (await sim.call("GET", "/nodes", admin) or {}).get("nodes", [])
        await db.dispose()
        await payloads.dispose()
        k = summarize(sim.outcomes, kpis, nodes, scenario, days, seed, time.monotonic() - started,
                      sim.stats + Counter({f"seconds_in:{x}": round(v, 1) for x, v in sim.timing.items()}))
        write_report(out, k, sim.outcomes)
        return k
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if env is not None:
            await env.shutdown()
        pg.cleanup()


class _Progress:
    """A rich progress bar of orders placed and finished, day by day (quiet without a console)."""

    def __init__(self, console, days: int):
        self.console, self.days = console, days
        self.bar = None
        self.placed = self.finished = 0

    def __enter__(self):
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task("day 1", total=0)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, day: Optional[int] = None, planned: int = 0, done: Optional[Outcome] = None) -> None:
        if day is not None:
            self.placed += planned
            if self.bar is not None:
                self.bar.update(self.task, total=self.placed, description=f"day {day + 1}/{self.days}: orders")
        if done is not None:
            self.finished += 1
            if self.bar is not None:
                self.bar.update(self.task, completed=self.finished)


