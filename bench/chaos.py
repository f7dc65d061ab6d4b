"""Chaos: orders through their whole life while pieces of the stack are broken on purpose.

Each run is a fresh stack (bench/stack.py: PostgreSQL, Temporal dev server, worker, API as processes)
and one fault:

  worker     the worker is SIGKILLed and started again 5 times
  temporal   the Temporal dev server is SIGKILLed and started again on its persistence file
  postgres   PostgreSQL is stopped for 10 seconds and started again
  adapters   carrier, payment and notification calls fail (20 %) and time out (10 %, half done anyway)

Customers place orders through the API (some cancel, some return); a simulated partner accepts
(sometimes rejects), picks (sometimes short), packs, ships and delivers. Then every order must have
closed (its workflow completed) in a final state, none lost, the inventory ledger balanced (on-hand
moves equal shipped, restocked and not-found units, nothing left reserved), and no duplicate
reservation, capture, refund or notification.

    python bench/chaos.py --orders 200                 # unbroken, then every fault: 200 orders each
    python bench/chaos.py --orders 200 --fault worker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import ADMIN_KEY, Stack  # noqa: E402

FAULTS = ("worker", "temporal", "postgres", "adapters")
FINAL = {"delivered", "partially_returned", "returned", "cancelled", "rejected"}
# Short windows so every order closes within the run; the acceptance timer stays long (the partner answers).
WINDOWS = {"NODAL_REMORSE_WINDOW": "2s", "NODAL_RETURN_WINDOW": "8s", "NODAL_ACCEPT_TIMEOUT": "10m",
           "NODAL_ADAPTER_LATENCY_MS": "5", "NODAL_RATE_LIMIT_PER_SECOND": "0", "NODAL_RATE_LIMIT_PER_ADDRESS": "0",
           "NODAL_LOG_LEVEL": "INFO"}
FAULT_ENV = {"adapters": {"NODAL_ADAPTER_FAILURE_RATE": "0.2", "NODAL_ADAPTER_TIMEOUT_RATE": "0.1",
                          "NODAL_ADAPTER_TIMEOUT_MS": "500"}}
NODES = {"DC-A": dict(type="dc", lat=41.60, lon=-88.10, capabilities=["ship"]),
         "DC-B": dict(type="dc", lat=39.10, lon=-94.58, capabilities=["ship"]),
         "DC-C": dict(type="dc", lat=32.78, lon=-96.80, capabilities=["ship"])}
SKUS = 5
STOCK = 5000


@dataclass
class Figures:
    fault: str
    orders: int = 0
    seconds: float = 0.0
    faults_injected: list[str] = field(default_factory=list)
    in_flight_at_faults: list[int] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    partner: Counter = field(default_factory=Counter)
    api_retries: int = 0
    activity_retries: int = 0
    problems: list[str] = field(default_factory=list)
    # Personal data the run put in (emails, streets): a privacy check can look for it in the logs.
    personal: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.fault:9} {self.orders} orders in {self.seconds:.0f} s; faults: {', '.join(self.faults_injected) or 'none'}",
               "          final: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
               "          partner: " + ", ".join(f"{k} {v}" for k, v in sorted(self.partner.items())),
               f"          API calls retried after 5xx/timeouts: {self.api_retries}; activity attempts retried: {self.activity_retries}",
               "          checks: " + ("all hold (none lost, ledger balances, no duplicates)" if not self.problems
                                     else f"{len(self.problems)} FAILED")]
        out += [f"            - {p}" for p in self.problems[:20]]
        return out


class Client:
    """The API as a patient client: a 5xx, a timeout or a refused connection is tried again, a POST under one
    Idempotency-Key, so a retry whose first answer was lost is the same request (a cancel that closed the order
    answers again instead of 'nothing left to cancel')."""

    def __init__(self, http: httpx.AsyncClient, figures: Figures, deadline: float):
        self.http, self.figures, self.deadline = http, figures, deadline

    async def call(self, method: str, path: str, key: str, ok: tuple = (200, 201), **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
        if method == "POST":
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        while True:
            try:
                r = await self.http.request(method, path, headers=headers, **kw)
                if r.status_code < 500 and r.status_code != 429 and not (
                        r.status_code == 409 and "Retry-After" in r.headers):
                    return r
            except httpx.HTTPError:
                pass
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{method} {path}: the stack did not answer before the run's deadline")
            self.figures.api_retries += 1
            await asyncio.sleep(0.5)


class Run:
    def __init__(self, stack: Stack, fault: str, orders: int, seed: int, concurrency: int, deadline_s: float):
        self.stack, self.fault, self.n = stack, fault, orders
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.figures = Figures(fault)
        self.deadline = time.monotonic() + deadline_s
        self.prefix = "c" + uuid.uuid4().hex[:6]
        self.order_ids: list[str] = []
        self.finished = 0
        self.not_found: Counter = Counter()  # (node, sku) → units a short pick did not find
        self.restocked: Counter = Counter()  # (node, sku) → units received back sellable
        self.placed_lines: dict[str, dict[str, str]] = {}  # order → line → sku

    # ------------------------------------------------------------ setup
    async def setup(self, api: Client) -> None:
        p = self.prefix
        self.postal = f"{p}-60601"
        for name, spec in NODES.items():
            r = await api.call("PUT", f"/nodes/{p}-{name}", ADMIN_KEY, json={
                "name": name, "postal_code": self.postal, "handling_cost": "0.50", "processing_time": "1h",
                "cutoff_time": "16:00", "timezone": "America/Chicago", **spec})
            assert r.status_code in (200, 201), r.text
        r = await api.call("PUT", "/service-areas", ADMIN_KEY, json=[{
            "postal_code": self.postal, "lat": 41.8781, "lon": -87.6298, "nodes": []}])
        assert r.status_code in (200, 201), r.text
        self.skus = [f"{p}-SKU{i}" for i in range(SKUS)]
        for s in self.skus:
            assert (await api.call("PUT", f"/skus/{s}", ADMIN_KEY, json={"name": s, "weight_kg": 1.0})).status_code in (200, 201)
        for name in NODES:
            r = await api.call("PUT", f"/inventory/{p}-{name}", ADMIN_KEY, json={
                "as_of": "2026-01-01T00:00:00Z", "items": [{"sku": s, "on_hand": STOCK} for s in self.skus]})
            assert r.status_code in (200, 201), r.text
        self.channel = f"{p}-web"
        self.client_key = (await api.call("POST", "/api-keys", ADMIN_KEY,
                                          json={"role": "client", "channel": self.channel})).json()["key"]
        self.partner_keys = {}
        for name in NODES:
            node = f"{p}-{name}"
            self.partner_keys[node] = (await api.call("POST", "/api-keys", ADMIN_KEY,
                                                      json={"role": "partner", "node_id": node})).json()["key"]

    # ------------------------------------------------------------ one customer and the partners serving them
    async def order(self, api: Client, i: int) -> None:
        rng = random.Random(self.rng.random())
        plan = "cancel" if rng.random() < 0.1 else "return" if rng.random() < 0.2 else "keep"
        email, street = f"chaos.{self.prefix}.{i}@example.org", f"{1000 + i} Chaosmonkey Avenue"
        name, phone = f"Ada Chaosperson{i}", f"+1-312-555-{i:04d}"
        self.figures.personal += [email, street, name, phone]
        skus = rng.sample(self.skus, rng.randint(1, 3))
        external = f"{self.prefix}-{i}"
        body = {"external_id": external, "channel": self.channel,
                "customer": {"id": f"cust-{i}", "email": email},
                "lines": [{"line_id": f"L{k + 1}", "sku": s, "qty": rng.randint(1, 3), "unit_price": "12.50",
                           "delivery": {"method": "ship_standard",
                                        "address": {"postal_code": self.postal, "line1": street,
                                                    "name": name, "phone": phone}}}
                          for k, s in enumerate(skus)]}
        r = await api.call("POST", "/orders", self.client_key, json=body, headers={"Idempotency-Key": external})
        assert r.status_code in (200, 201), r.text
        oid = r.json()["order_id"]
        self.order_ids.append(oid)
        self.placed_lines[oid] = {l["line_id"]: l["sku"] for l in body["lines"]}
        if plan == "cancel":
            while True:
                r = await api.call("POST", f"/orders/{oid}/cancel", self.client_key, json={"reason": "changed my mind"})
                if r.status_code == 200 or "cancelled" in r.text:
                    break
                if time.monotonic() > self.deadline:
                    self.figures.problems.append(f"{oid}: cancel refused until the run's deadline: {r.status_code} {r.text[:120]}")
                    return
                await asyncio.sleep(0.5)  # not promised yet
        returned = False
        acted: set[tuple[str, str]] = set()
        while time.monotonic() < self.deadline:
            r = await api.call("GET", f"/orders/{oid}", ADMIN_KEY)
            order = r.json()
            if order["status"] in FINAL and not any(f["status"] in ("released", "accepted", "picked", "packed", "shipped")
                                                    for f in order["fulfillments"]):
                if order["status"] != "delivered" or plan != "return" or returned:
                    self.finished += 1
                    return
            for f in order["fulfillments"]:
                if (f["fulfillment_id"], f["status"]) not in acted:
                    acted.add((f["fulfillment_id"], f["status"]))
                    await self.partner(api, rng, oid, f)
            if order["status"] == "delivered" and plan == "return" and not returned:
                returned = await self.give_back(api, oid, order)
            await asyncio.sleep(0.3)
        self.figures.problems.append(f"{oid} still {order['status']} at the run's deadline; fulfillments: "
                                     + ", ".join(f"{f['fulfillment_id']} {f['status']}" for f in order["fulfillments"]))

    async def partner(self, api: Client, rng: random.Random, oid: str, f: dict) -> None:
        fid, status, node = f["fulfillment_id"], f["status"], f["node_id"]
        key = self.partner_keys[node]
        first = fid.endswith("-F1")  # only the first node misbehaves, so every order finds a node
        path = f"/fulfillments/{fid}"
        if status == "released":
            if first and rng.random() < 0.05:
                step, r = "reject", await api.call("POST", f"{path}/reject", key, json={"reason": "damaged"})
            else:
                step, r = "accept", await api.call("POST", f"{path}/accept", key)
        elif status == "accepted":
            lines = [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]
            step = "pick"
            if first and rng.random() < 0.05:
                lines[0]["qty"] -= 1
                step = "short pick"
                sku = next(l["sku"] for l in f["lines"] if l["line_id"] == lines[0]["line_id"])
            r = await api.call("POST", f"{path}/pick", key, json={"lines": lines})
            if step == "short pick" and r.status_code == 200 and r.json().get("changed", True):
                self.not_found[(node, sku)] += 1
        elif status in ("picked", "packed", "shipped"):
            step = {"picked": "pack", "packed": "ship", "shipped": "deliver"}[status]
            r = await api.call("POST", f"{path}/{step}", key)
        else:
            return
        self.figures.partner[step] += 1
        if r.status_code not in (200, 409):
            self.figures.problems.append(f"{fid} {step}: {r.status_code} {r.text[:120]}")

    async def give_back(self, api: Client, oid: str, order: dict) -> bool:
        line = next(l for l in order["lines"] if l.get("delivered_qty"))
        r = await api.call("POST", f"/orders/{oid}/returns", self.client_key,
                           json={"lines": [{"line_id": line["line_id"], "qty": 1}], "reason": "did not fit"})
        if r.status_code != 201:
            return "return window" in r.text  # too late: the order keeps what it has
        rid = r.json()["return_id"]
        node = r.json().get("node_id") or (await api.call("GET", f"/returns/{rid}", ADMIN_KEY)).json()["node_id"]
        r = await api.call("POST", f"/returns/{rid}/receive", self.partner_keys[node],
                           json={"lines": [{"line_id": line["line_id"], "qty": 1, "disposition": "sellable"}]})
        if r.status_code == 200:
            self.restocked[(node, line["sku"])] += 1
        return True

    # ------------------------------------------------------------ faults
    def in_flight(self) -> str:
        n = len(self.order_ids) - self.finished
        self.figures.in_flight_at_faults.append(n)
        return f"{n} orders in flight"

    async def inject(self) -> None:
        s, f = self.stack, self.figures
        if self.fault == "worker":
            for k in range(5):
                await asyncio.sleep(self.pace)
                await asyncio.to_thread(s.kill_worker, 0)
                f.faults_injected.append(f"worker SIGKILL #{k + 1} ({self.in_flight()})")
                await asyncio.sleep(1)
                await asyncio.to_thread(s.start_worker, 0)
        elif self.fault == "temporal":
            await asyncio.sleep(self.pace * 2)
            await asyncio.to_thread(s.kill_temporal)
            f.faults_injected.append(f"Temporal dev server SIGKILL ({self.in_flight()})")
            await asyncio.sleep(3)
            await asyncio.to_thread(s.start_temporal)
            f.faults_injected.append("restarted on its database file")
        elif self.fault == "postgres":
            await asyncio.sleep(self.pace * 2)
            await asyncio.to_thread(s.stop_postgres)
            f.faults_injected.append(f"PostgreSQL stopped ({self.in_flight()})")
            await asyncio.sleep(10)
            await asyncio.to_thread(s.restart_postgres)
            f.faults_injected.append("started again after 10 s")
        elif self.fault == "adapters":
            f.faults_injected.append("adapters: 20 % fail, 10 % time out after 500 ms")
        # "none": the same run unbroken, the yardstick for the others' times

    async def run(self) -> Figures:
        started = time.monotonic()
        # Faults land while orders are in flight: spread over the expected time to place them.
        self.pace = max(self.n / 12, 3)
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=30) as http:
            api = Client(http, self.figures, self.deadline)
            await self.setup(api)
            gate = asyncio.Semaphore(self.concurrency)

            async def one(i: int) -> None:
                async with gate:
                    await self.order(api, i)
            chaos = asyncio.create_task(self.inject())
            await asyncio.gather(*(one(i) for i in range(self.n)))
            await chaos
            await self.wait_closed()
        self.figures.orders = len(self.order_ids)
        self.figures.seconds = time.monotonic() - started
        await self.verify()
        return self.figures

    async def wait_closed(self) -> None:
        from temporalio.client import Client as TemporalClient, WorkflowExecutionStatus

        from nodal.client import connect
        from nodal.settings import Settings

        client: TemporalClient = await connect(Settings(temporal_address=self.stack.temporal_address))
        self.temporal = client
        for oid in self.order_ids:
            while True:
                desc = await client.get_workflow_handle(oid).describe()
                if desc.status == WorkflowExecutionStatus.COMPLETED:
                    break
                if desc.status != WorkflowExecutionStatus.RUNNING or time.monotonic() > self.deadline:
                    self.figures.problems.append(f"{oid}: workflow {desc.status.name}, not completed")
                    break
                await asyncio.sleep(0.5)

    # ------------------------------------------------------------ after the run
    async def verify(self) -> None:
        import psycopg

        from nodal.db import sqlalchemy_url

        f, p = self.figures, self.figures.problems
        url = sqlalchemy_url(self.stack.database_url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
            orders = dict(q("SELECT order_id, status FROM orders WHERE channel = %s", self.channel))
            f.outcomes = Counter(orders.values())
            lost = set(self.order_ids) - set(orders)
            if lost or len(orders) != self.n:
                p.append(f"{self.n} orders placed, {len(orders)} in the read model; lost: {sorted(lost)[:5]}")
            for oid, status in orders.items():
                if status not in FINAL:
                    p.append(f"{oid} ended {status}")
            # The ledger balances: on hand moved by exactly what shipped, came back sellable, or was not found.
            shipped = Counter()
            for node, lines in q("SELECT node_id, lines FROM fulfillments WHERE order_id = ANY(%s)"
                                 " AND status IN ('shipped', 'delivered')", list(orders)):
                for l in lines:
                    shipped[(node, l["sku"])] += l["qty"]
            positions = q("SELECT node_id, sku, on_hand, reserved FROM inventory_positions WHERE sku = ANY(%s)", self.skus)
            ledger = {(n, s): (oh, rd) for n, s, oh, rd in q(
                "SELECT node_id, sku, SUM(on_hand_delta), SUM(reserved_delta) FROM inventory_ledger"
                " WHERE sku = ANY(%s) AND reason NOT IN ('snapshot', 'import') AND disposition = 'sellable'"
                " GROUP BY 1, 2", self.skus)}
            for node, sku, on_hand, reserved in positions:
                want = STOCK - shipped[(node, sku)] + self.restocked[(node, sku)] - self.not_found[(node, sku)]
                moved, held = ledger.get((node, sku), (0, 0))
                if on_hand != want or STOCK + moved != on_hand or reserved != 0 or held != 0:
                    p.append(f"{node}/{sku}: on hand {on_hand}, expected {want} (shipped {shipped[(node, sku)]},"
                             f" restocked {self.restocked[(node, sku)]}, not found {self.not_found[(node, sku)]});"
                             f" ledger moved {moved}; reserved {reserved}, ledger reserved {held}")
            # No duplicates: one reservation row and one reserve entry per fulfillment line.
            for fid, line, n in q("SELECT fulfillment_id, line_id, COUNT(*) FROM reservations WHERE order_id = ANY(%s)"
                                  " GROUP BY 1, 2 HAVING COUNT(*) > 1", list(orders)):
                p.append(f"{fid}/{line}: {n} reservations")
            held = dict(q("SELECT status, COUNT(*) FROM reservations WHERE order_id = ANY(%s) GROUP BY 1", list(orders)))
            if held.get("held") or held.get("committed"):
                p.append(f"reservations still holding stock: {held}")
            # The payment gateway's own record: one capture per shipped fulfillment, one refund per return.
            calls = Counter()
            for key, in q("SELECT idempotency_key FROM adapter_calls WHERE system = 'payments'"):
                kind, ref = key.split(":")[:2]
                if re.match(r"ORD-[A-Z0-9]+", ref).group(0) in orders:
                    calls[kind] += 1
            ships = q("SELECT COUNT(*) FROM fulfillments WHERE order_id = ANY(%s) AND status IN ('shipped', 'delivered')",
                      list(orders))[0][0]
            gateway = dict(q("SELECT kind, COUNT(*) FROM payments WHERE order_id = ANY(%s) GROUP BY 1", list(orders)))
            received = q("SELECT COUNT(*) FROM returns WHERE order_id = ANY(%s) AND status = 'refunded'", list(orders))[0][0]
            if gateway.get("capture", 0) != ships or calls["capture"] != ships:
                p.append(f"{ships} shipments but {gateway.get('capture', 0)} captures recorded, {calls['capture']} at the gateway")
            if gateway.get("refund", 0) != received or calls["refund"] != received:
                p.append(f"{received} refunded returns but {gateway.get('refund', 0)} refunds, {calls['refund']} at the gateway")
            for oid, n in q("SELECT order_id, COUNT(*) FROM payments WHERE order_id = ANY(%s) AND kind = 'authorization'"
                            " GROUP BY 1 HAVING COUNT(*) > 1", list(orders)):
                p.append(f"{oid}: {n} authorizations")
            # Notifications: one per event key at the provider, and one shipped notice per shipment.
            sent = Counter()
            for oid, event in q("SELECT response->>'order_id', response->>'event' FROM adapter_calls"
                                " WHERE system = 'notifications' AND response->>'order_id' = ANY(%s)", list(orders)):
                sent[event] += 1
            promised = sum(1 for oid in orders if oid)  # every order in this run was promised (ample stock)
            if sent["shipped"] != ships or sent["confirmed"] != promised or sent["refunded"] != received:
                p.append(f"notifications {dict(sent)} for {ships} shipments, {promised} orders, {received} refunds")
        f.activity_retries = await self.retried_attempts()

    async def retried_attempts(self) -> int:
        """Activity attempts after the first, from the histories of each order and its fulfillments (what the
        faults cost): ordinary activities by their started attempt, local ones by their marker's."""
        total = 0
        pending = list(self.order_ids)
        while pending:
            history = await self.temporal.get_workflow_handle(pending.pop()).fetch_history()
            for e in history.events:
                if e.HasField("activity_task_started_event_attributes"):
                    total += e.activity_task_started_event_attributes.attempt - 1
                elif e.HasField("marker_recorded_event_attributes"):
                    data = e.marker_recorded_event_attributes.details.get("data")
                    if data is not None and data.payloads:
                        total += json.loads(data.payloads[0].data).get("attempt", 1) - 1
                elif e.HasField("child_workflow_execution_started_event_attributes"):
                    pending.append(e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id)
        return total


async def chaos(fault: str, orders: int, home: Optional[Path] = None, seed: int = 7, concurrency: int = 10,
                deadline_s: float = 600) -> tuple[Figures, str]:
    """One fault over a fresh stack; returns its figures and the API and worker logs."""
    home = home or Path(tempfile.mkdtemp(prefix=f"nodal-chaos-{fault}-"))
    stack = Stack(home, env={**WINDOWS, **FAULT_ENV.get(fault, {})})
    await asyncio.to_thread(stack.start)
    try:
        figures = await Run(stack, fault, orders, seed, concurrency, deadline_s).run()
    finally:
        await asyncio.to_thread(stack.stop)
    return figures, stack.logs()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--fault", choices=("none",) + FAULTS, action="append")
    ap.add_argument("--concurrency", type=int, default=10)
    args = ap.parse_args()
    failed = False
    for fault in args.fault or ("none",) + FAULTS:
        figures, _ = asyncio.run(chaos(fault, args.orders, concurrency=args.concurrency))
        print("\n".join(figures.lines()), flush=True)
        failed |= bool(figures.problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
