"""`nodal route --stdio`: the sourcing engine behind the published benchmark's JSON-lines protocol.

The same ``routing.plan`` the order workflow calls decides every order; this module only translates the
benchmark's network (nodes, regions as destinations, service lists as the store mapping) into the
engine's NetworkView, keeps its own stock and capacity from its own allocations, and re-prices scarce
stock from the demand forecast (routing/bidprice.py) as the horizon runs down.
See bench/ROUTING.md for the protocol.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import IO, Optional

from routing.bidprice import Demand, ForecastLp
from routing.cost import unit_cost
from routing.engine import plan
from routing.fast import DenseStock, Tables, quick_plan, same_decision
from routing.geo import haversine_km
from routing.model import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest

METHOD = "ship_standard"


class Session:
    def __init__(self, network: dict, model: CostModel = CostModel(), resolve_every: int = 100,
                 max_splits: int = 2, use_forecast: bool = True, background: bool = True,
                 budget_ms: Optional[float] = None, compare: bool = False):
        self.model, self.resolve_every, self.max_splits = model, resolve_every, max_splits
        # With compare: per order, whether the quote engine decided as the full engine did (None: it declined).
        self.compare: Optional[list[Optional[str]]] = [] if compare else None
        self.budget_ms = budget_ms
        self.nodes = {n["id"]: NodeInfo(
            node_id=n["id"], type="dc" if n.get("kind", "dc") == "dc" else "store", lat=n["lat"], lon=n["lon"],
            capabilities=frozenset({"ship"}), handling_cost=float(n.get("unit_surcharge") or 0.0),
            remaining_units=n.get("capacity_units")) for n in network["nodes"]}
        self.regions = {r["id"]: (r["lat"], r["lon"]) for r in network["regions"]}
        # The service lists are the store mapping; DCs ship everywhere.
        self.service = {r: list(ids) for r, ids in network["service"].items()}
        self.service_areas = {r: {k: 1 for k in ids if self.nodes[k].type == "store"} for r, ids in self.service.items()}
        self.stock = {(k, s): int(q) for k, skus in network["inventory"].items() for s, q in skus.items() if q > 0}
        self.capacity: dict[str, Optional[int]] = {k: n.remaining_units for k, n in self.nodes.items()}
        self.horizon = int(network.get("horizon") or 0)
        self.demand = [Demand(f["region"], tuple(f["skus"]), float(f["expected"]))
                       for f in network.get("forecast", [])] if use_forecast else []
        self.unit = {(k, r): unit_cost(self.nodes[k], self._line(r, "", 1), model)
                     for r, ids in self.service.items() for k in ids}
        # A lost unit costs twice the worst case: the farthest node's unit cost (the benchmark's rule).
        self.unfilled_unit = {r: 2 * (model.unit_base + model.per_km * max(
            haversine_km(n.lat, n.lon, *self.regions[r]) for n in self.nodes.values())) for r in self.regions}
        self.opportunity: dict[tuple[str, str], float] = {}
        self.seen = 0
        self.pending: Optional[Future] = None
        self.pool: Optional[ProcessPoolExecutor] = None
        self.pricer: Optional[_Pricer] = None
        self._reprice()  # before the first order, in this process
        if self.demand and background:
            self.pool = ProcessPoolExecutor(max_workers=1, initializer=_keep_forecast, initargs=(self._forecast(),))

    def _line(self, region: str, sku: str, qty: int, line_id: str = "0") -> RouteLine:
        lat, lon = self.regions[region]
        return RouteLine(line_id=line_id, sku=sku, qty=qty, method=METHOD, postal_code=region, lat=lat, lon=lon)

    def _forecast(self) -> tuple:
        return (self.demand, self.service, self.unit, self.unfilled_unit, self.model)

    def _reprice(self) -> None:
        """Re-solve the forecast LP on the stock left.

        The LP runs in another process (which holds the forecast and costs from the start, so only the
        stock travels) and its prices apply from the first order after it finishes: no order ever waits
        for it. So a run's choices depend a little on timing; ``background=False`` solves in line and
        is reproducible.
        """
        left = max(self.horizon - self.seen, 0) / self.horizon if self.horizon else 0.0
        if not self.demand or left <= 0:
            self.opportunity, self.pending = {}, None
            return
        if self.pool is None:
            if self.pricer is None:
                self.pricer = _Pricer(self._forecast(), self.stock, self.capacity)
            self.opportunity = self.pricer(left, self.stock, self.capacity)
        else:
            self.pending = self.pool.submit(_price_in_worker, left, dict(self.stock), dict(self.capacity))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def decide(self, order: dict) -> list[dict]:
        if self.pending is not None and self.pending.done():
            self.opportunity, self.pending = self.pending.result(), None
        if self.seen and self.seen % self.resolve_every == 0 and self.pending is None:
            self._reprice()
        self.seen += 1
        region = order["region"]
        lines = tuple(self._line(region, l["sku"], int(l["qty"]), str(i)) for i, l in enumerate(order["lines"]))
        nodes = {k: replace(self.nodes[k], remaining_units=self.capacity[k]) for k in self.service.get(region, [])}
        net = NetworkView(nodes=nodes, service_areas={region: self.service_areas.get(region, {})},
                          available=self.stock, opportunity=self.opportunity)
        # A lost unit costs what the benchmark charges for it here, so the engine weighs it like any option.
        model = replace(self.model, unfilled_penalty=self.unfilled_unit[region],
                        unfilled_order_fee=2 * self.model.package_cost)
        req = RouteRequest(lines=lines, max_splits=self.max_splits, budget_ms=self.budget_ms)
        result = plan(req, net, model)
        if self.compare is not None:
            # The quote engine on the same order and stock: it must decide the same (routing/fast.py).
            quick = quick_plan(req, replace(net, available=DenseStock.from_mapping(
                {k: v for k, v in self.stock.items() if k[0] in nodes}, {l.sku for l in lines})), model, Tables())
            self.compare.append(same_decision(result, quick))
        out = []
        for a in result.assignments:
            self.stock[(a.node_id, a.sku)] -= a.qty
            if self.capacity[a.node_id] is not None:
                self.capacity[a.node_id] -= a.qty
            out.append({"line": int(a.line_id), "node": a.node_id, "qty": a.qty})
        return out


class _Pricer:
    """One forecast LP per session, re-solved from its last basis as stock runs down."""

    def __init__(self, forecast: tuple, stock, capacity):
        demand, service, unit, unfilled_unit, model = forecast
        self.lp = ForecastLp(demand, stock, capacity, lambda destination, _sku: service[destination], unit,
                             unfilled_unit, model)

    def __call__(self, left: float, stock, capacity) -> dict[tuple[str, str], float]:
        return self.lp.prices(left, stock, capacity)


_FORECAST: tuple = ()
_PRICER: Optional[_Pricer] = None


def _keep_forecast(forecast: tuple) -> None:
    global _FORECAST
    _FORECAST = forecast


def _price_in_worker(left: float, stock, capacity) -> dict[tuple[str, str], float]:
    global _PRICER
    if _PRICER is None:
        _PRICER = _Pricer(_FORECAST, stock, capacity)
    return _PRICER(left, stock, capacity)


def serve(inp: IO[str] = sys.stdin, out: IO[str] = sys.stdout, **options) -> None:
    session: Optional[Session] = None
    for raw in inp:
        if not raw.strip():
            continue
        msg = json.loads(raw)
        kind = msg.get("type")
        if kind == "network":
            session = Session(msg, **options)
            reply = {"type": "ready"}
        elif kind == "order":
            if session is None:
                raise SystemExit("an order before the network")
            reply = {"id": msg["id"], "allocations": session.decide(msg)}
        elif kind == "end":
            break
        else:
            raise SystemExit(f"unknown message type {kind!r}")
        out.write(json.dumps(reply) + "\n")
        out.flush()
    if session is not None:
        session.close()
