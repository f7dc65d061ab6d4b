"""Bid prices: what one more unit taken at a node today is expected to cost the orders still to come.

The deterministic LP (DLP) of the rest of the horizon routes the forecast demand (expected arrivals of
each order type at each destination) through today's stock and capacity at the least landed cost, with
each order type's packages counted per node used. The dual price of a node's stock of a SKU (and of its
capacity) is the future cost of taking one unit of it now; the engine adds it to the unit's landed cost
(Acimovic & Graves 2015 price the future the same way). Forecasts too large for the order-type LP in the
time budget fall back to the per-destination, per-SKU transportation LP (no package coupling).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from routing.cost import unit_cost as landed_unit_cost
from routing.eligibility import ineligible_reason
from routing.model import CostModel, NetworkView, RouteLine, RouteRequest

# Beyond this many variables the order-type LP is replaced by the transportation LP.
MAX_ORDER_TYPE_VARIABLES = 150_000


@dataclass(frozen=True)
class Demand:
    """Expected arrivals of one order type (a set of SKUs, one unit each) at one destination."""

    destination: str
    skus: tuple[str, ...]
    expected: float


def bid_prices(
    demand: list[Demand],
    stock: dict[tuple[str, str], int],
    capacity: dict[str, int | None],
    eligible: Callable[[str, str], Iterable[str]],
    unit_cost: dict[tuple[str, str], float],
    unfilled_unit: dict[str, float],
    model: CostModel,
    time_limit: float = 10.0,
) -> dict[tuple[str, str], float]:
    """(node, sku) → future cost of one unit there; ``eligible(destination, sku)`` lists the nodes that may
    serve it, ``unit_cost[(node, destination)]`` is a unit's landed cost, ``unfilled_unit`` a lost unit's."""
    size = sum(len(list(eligible(d.destination, s))) + 1 for d in demand for s in d.skus)
    if size <= MAX_ORDER_TYPE_VARIABLES:
        return _order_type_lp(demand, stock, capacity, eligible, unit_cost, unfilled_unit, model, time_limit)
    return _transportation_lp(demand, stock, capacity, eligible, unit_cost, unfilled_unit, time_limit)


class _Lp:
    """Sparse rows for scipy's HiGHS interface."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.ub: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.b_ub: list[float] = []
        self.eq: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.b_eq: list[float] = []

    def var(self, cost: float) -> int:
        self.cost.append(cost)
        return len(self.cost) - 1

    def row(self, kind: str, bound: float) -> int:
        rows = self.b_ub if kind == "ub" else self.b_eq
        rows.append(bound)
        return len(rows) - 1

    def coef(self, kind: str, row: int, col: int, value: float) -> None:
        r, c, v = self.ub if kind == "ub" else self.eq
        r.append(row)
        c.append(col)
        v.append(value)

    def solve(self, time_limit: float):
        n = len(self.cost)
        a_ub = coo_matrix((self.ub[2], (self.ub[0], self.ub[1])), shape=(len(self.b_ub), n)) if self.b_ub else None
        a_eq = coo_matrix((self.eq[2], (self.eq[0], self.eq[1])), shape=(len(self.b_eq), n)) if self.b_eq else None
        res = linprog(np.array(self.cost), A_ub=a_ub, b_ub=self.b_ub or None, A_eq=a_eq, b_eq=self.b_eq or None,
                      bounds=(0, None), method="highs", options={"time_limit": time_limit})
        return res if res.status == 0 else None


def _prices(res, stock_rows: dict[tuple[str, str], int], cap_rows: dict[str, int]) -> dict[tuple[str, str], float]:
    if res is None:
        return {}
    duals = -res.ineqlin.marginals  # ≤ rows of a minimisation: marginals are ≤ 0
    return {(node, sku): float(duals[row]) + (float(duals[cap_rows[node]]) if node in cap_rows else 0.0)
            for (node, sku), row in stock_rows.items()}


def _resource_rows(lp: _Lp, stock, capacity, stock_rows, cap_rows, node: str, sku: str, col: int, qty: float):
    key = (node, sku)
    if key not in stock_rows:
        stock_rows[key] = lp.row("ub", stock.get(key, 0))
    lp.coef("ub", stock_rows[key], col, qty)
    if capacity.get(node) is not None:
        if node not in cap_rows:
            cap_rows[node] = lp.row("ub", capacity[node])
        lp.coef("ub", cap_rows[node], col, qty)


def _order_type_lp(demand, stock, capacity, eligible, unit_cost, unfilled_unit, model, time_limit):
    lp = _Lp()
    stock_rows: dict[tuple[str, str], int] = {}
    cap_rows: dict[str, int] = {}
    for d in demand:
        # y = share of these orders with a package from a node; u = share of a SKU's units from it.
        packages: dict[str, int] = {}
        lost = lp.var(d.expected * 2 * model.package_cost)
        for sku in d.skus:
            served = lp.row("eq", 1.0)
            for node in eligible(d.destination, sku):
                if stock.get((node, sku), 0) <= 0:
                    continue
                if node not in packages:
                    packages[node] = lp.var(d.expected * model.package_cost)
                u = lp.var(d.expected * unit_cost[(node, d.destination)])
                lp.coef("eq", served, u, 1.0)
                link = lp.row("ub", 0.0)
                lp.coef("ub", link, u, 1.0)
                lp.coef("ub", link, packages[node], -1.0)
                _resource_rows(lp, stock, capacity, stock_rows, cap_rows, node, sku, u, d.expected)
            u = lp.var(d.expected * unfilled_unit[d.destination])
            lp.coef("eq", served, u, 1.0)
            link = lp.row("ub", 0.0)
            lp.coef("ub", link, u, 1.0)
            lp.coef("ub", link, lost, -1.0)
    return _prices(lp.solve(time_limit), stock_rows, cap_rows)


def _transportation_lp(demand, stock, capacity, eligible, unit_cost, unfilled_unit, time_limit):
    units: dict[tuple[str, str], float] = {}
    for d in demand:
        for sku in d.skus:
            units[(d.destination, sku)] = units.get((d.destination, sku), 0.0) + d.expected
    lp = _Lp()
    stock_rows: dict[tuple[str, str], int] = {}
    cap_rows: dict[str, int] = {}
    for (dest, sku), qty in units.items():
        served = lp.row("eq", qty)
        for node in eligible(dest, sku):
            if stock.get((node, sku), 0) > 0:
                x = lp.var(unit_cost[(node, dest)])
                lp.coef("eq", served, x, 1.0)
                _resource_rows(lp, stock, capacity, stock_rows, cap_rows, node, sku, x, 1.0)
        lp.coef("eq", served, lp.var(unfilled_unit[dest]), 1.0)
    return _prices(lp.solve(time_limit), stock_rows, cap_rows)


@dataclass(frozen=True)
class ForecastEntry:
    """Expected orders of one basket to one postal code over what is left of the forecast's horizon."""

    postal_code: str
    lat: float
    lon: float
    skus: tuple[str, ...]
    expected: float


def network_bid_prices(
    entries: list[ForecastEntry],
    view: NetworkView,
    capacity: dict[str, Optional[int]],
    model: CostModel,
    time_limit: float = 30.0,
) -> dict[tuple[str, str], float]:
    """Bid prices for the live network: which node may serve which forecast basket is decided by the same
    eligibility rules as an order (capability, service areas, SKU handling, minimum stock), at standard
    shipping; ``capacity`` is each node's units over the rest of the horizon (None = unlimited) instead of
    today's. A lost unit is priced, as in the benchmark, at twice the cost of shipping it from the farthest
    node."""
    nodes = {k: replace(n, remaining_units=None, remaining_orders=None) for k, n in view.nodes.items()}
    probe_view = replace(view, nodes=nodes)
    request = RouteRequest(lines=())
    places = {e.postal_code: (e.lat, e.lon) for e in entries}
    allowed: dict[tuple[str, str], list[str]] = {}
    unit: dict[tuple[str, str], float] = {}
    for postal, (lat, lon) in places.items():
        for sku in sorted({s for e in entries if e.postal_code == postal for s in e.skus}):
            line = RouteLine("forecast", sku, 1, "ship_standard", postal_code=postal, lat=lat, lon=lon)
            allowed[(postal, sku)] = [k for k, n in nodes.items()
                                      if ineligible_reason(n, line, request, probe_view, model) is None]
            for k in allowed[(postal, sku)]:
                unit.setdefault((k, postal), landed_unit_cost(nodes[k], line, model))
    far = {postal: max((landed_unit_cost(n, RouteLine("forecast", "", 1, "ship_standard", lat=lat, lon=lon), model)
                        for n in nodes.values()), default=model.unit_base) for postal, (lat, lon) in places.items()}
    demand = [Demand(e.postal_code, e.skus, e.expected) for e in entries if e.expected > 0]
    stock = {key: qty for key, qty in view.available.items() if qty > 0}
    return bid_prices(demand, stock, capacity, lambda dest, sku: allowed.get((dest, sku), ()), unit,
                      {p: 2 * c for p, c in far.items()}, model, time_limit)
