"""Bid prices: what one more unit taken at a node today is expected to cost the orders still to come.

The deterministic LP (DLP) of the rest of the horizon routes the forecast demand (expected arrivals of
each order type at each destination) through today's stock and capacity at the least landed cost, with
each order type's packages counted per node used. The dual price of a node's stock of a SKU (and of its
capacity) is the future cost of taking one unit of it now; the engine adds it to the unit's landed cost
(Acimovic & Graves 2015 price the future the same way). Forecasts too large for the order-type LP in the
time budget fall back to the per-destination, per-SKU transportation LP (no package coupling).

The model is one HiGHS instance (highspy) that later re-pricings re-solve from the last basis, changing only
bounds: how much of the forecast is still ahead, and the stock and capacity left.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

import highspy
import numpy as np

from routing.cost import unit_cost as landed_unit_cost
from routing.eligibility import ineligible_reason
from routing.model import CostModel, NetworkView, RouteLine, RouteRequest

INF = highspy.kHighsInf

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
    lp = ForecastLp(demand, stock, capacity, eligible, unit_cost, unfilled_unit, model, time_limit)
    return lp.prices(1.0, stock, capacity)


class ForecastLp:
    """The forecast LP as one HiGHS model, in volumes (orders and units, not shares of them).

    Re-pricing later only moves bounds: the orders still expected (the forecast × the share of the horizon
    left), and the stock and capacity left. HiGHS then re-solves from its last basis in a few milliseconds
    instead of building and solving the model again.
    """

    def __init__(self, demand, stock, capacity, eligible, unit_cost, unfilled_unit, model: CostModel,
                 time_limit: float = 10.0) -> None:
        self.cost: list[float] = []
        self.rows: list[tuple[float, float, list[int], list[float]]] = []
        self.stock_rows: dict[tuple[str, str], int] = {}
        self.cap_rows: dict[str, int] = {}
        self.served: list[tuple[int, float]] = []  # (row, expected volume over the whole horizon)
        self._capacity = capacity
        size = sum(len(list(eligible(d.destination, s))) + 1 for d in demand for s in d.skus)
        if size <= MAX_ORDER_TYPE_VARIABLES:
            self._order_types(demand, stock, eligible, unit_cost, unfilled_unit, model)
        else:
            self._transportation(demand, stock, eligible, unit_cost, unfilled_unit)
        self.highs = _highs(self.cost, self.rows, time_limit)
        self._served_rows = np.array([r for r, _ in self.served], dtype=np.int32)
        self._served_volume = np.array([v for _, v in self.served])

    def _var(self, cost: float) -> int:
        self.cost.append(cost)
        return len(self.cost) - 1

    def _uses(self, node: str, sku: str, col: int, stock) -> None:
        """Column ``col`` takes units of ``sku`` at ``node``: its stock row, and its capacity row if any."""
        if (node, sku) not in self.stock_rows:
            self.stock_rows[(node, sku)] = len(self.rows)
            self.rows.append((-INF, float(stock.get((node, sku), 0)), [], []))
        rows = [self.stock_rows[(node, sku)]]
        if self._capacity.get(node) is not None:
            if node not in self.cap_rows:
                self.cap_rows[node] = len(self.rows)
                self.rows.append((-INF, float(self._capacity[node]), [], []))
            rows.append(self.cap_rows[node])
        for row in rows:
            self.rows[row][2].append(col)
            self.rows[row][3].append(1.0)

    def _served(self, cols: list[int], volume: float) -> None:
        self.served.append((len(self.rows), volume))
        self.rows.append((volume, volume, cols, [1.0] * len(cols)))

    def _order_types(self, demand, stock, eligible, unit_cost, unfilled_unit, model) -> None:
        # y = orders of a type with a package from a node (or lost); x = its units of a SKU from there.
        for d in demand:
            packages: dict[str, int] = {}
            lost = self._var(2 * model.package_cost)
            for sku in d.skus:
                cols = []
                for node in eligible(d.destination, sku):
                    if stock.get((node, sku), 0) <= 0:
                        continue
                    if node not in packages:
                        packages[node] = self._var(model.package_cost)
                    x = self._var(unit_cost[(node, d.destination)])
                    self.rows.append((-INF, 0.0, [x, packages[node]], [1.0, -1.0]))
                    self._uses(node, sku, x, stock)
                    cols.append(x)
                x = self._var(unfilled_unit[d.destination])
                self.rows.append((-INF, 0.0, [x, lost], [1.0, -1.0]))
                self._served(cols + [x], d.expected)

    def _transportation(self, demand, stock, eligible, unit_cost, unfilled_unit) -> None:
        # Too large for order types: units per destination and SKU, packages not coupled.
        units: dict[tuple[str, str], float] = {}
        for d in demand:
            for sku in d.skus:
                units[(d.destination, sku)] = units.get((d.destination, sku), 0.0) + d.expected
        for (dest, sku), qty in units.items():
            cols = []
            for node in eligible(dest, sku):
                if stock.get((node, sku), 0) > 0:
                    x = self._var(unit_cost[(node, dest)])
                    self._uses(node, sku, x, stock)
                    cols.append(x)
            self._served(cols + [self._var(unfilled_unit[dest])], qty)

    def prices(self, left: float, stock, capacity) -> dict[tuple[str, str], float]:
        """Bid prices with ``left`` of the horizon's orders still to come and this stock and capacity left."""
        h = self.highs
        if len(self._served_rows):
            volume = self._served_volume * left
            h.changeRowsBounds(len(self._served_rows), self._served_rows, volume, volume)
        for (node, sku), row in self.stock_rows.items():
            h.changeRowBounds(row, -INF, float(max(stock.get((node, sku), 0), 0)))
        for node, row in self.cap_rows.items():
            if capacity.get(node) is not None:
                h.changeRowBounds(row, -INF, float(max(capacity[node], 0)))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return {}
        dual = h.getSolution().row_dual  # ≤ rows of a minimisation: duals are ≤ 0
        return {(node, sku): -dual[row] - (dual[self.cap_rows[node]] if node in self.cap_rows else 0.0)
                for (node, sku), row in self.stock_rows.items()}


def _highs(cost: list[float], rows, time_limit: float) -> "highspy.Highs":
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    n = len(cost)
    h.addVars(n, np.zeros(n), np.full(n, INF))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(cost, dtype=float))
    starts, index, value = [], [], []
    for _, _, cols, coefs in rows:
        starts.append(len(index))
        index.extend(cols)
        value.extend(coefs)
    if rows:
        h.addRows(len(rows), np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), len(index),
                  np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32), np.array(value))
    return h


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
    wanted: dict[str, set[str]] = {}
    for e in entries:
        wanted.setdefault(e.postal_code, set()).update(e.skus)
    for postal, (lat, lon) in places.items():
        for sku in sorted(wanted[postal]):
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
