"""The quote path of the routing engine: the same decisions as ``routing.engine.plan``, for a fraction of its cost.

``plan`` judges every node of the network for every line in Python: for a 5-line cart over 200 nodes that is a
thousand eligibility checks and price sums per delivery method, most of them the same for every cart to the same
place. Here:

- what depends only on the destination, the method and the channel (which nodes may ship there at all, each one's
  landed unit cost, the store mapping's and the routing rules' preferences, the SKU rules per node type) is worked
  out once per destination and kept until the network or the rules change (``Tables``);
- what depends on the cart (stock, exclusions, capacity, today's same-day cutoff) is numpy arithmetic over those
  nodes, with stock as dense vectors (``DenseStock``) filled from the availability index once per quote for all its
  methods;
- the candidates are ranked as ``plan`` ranks them (cheapest unit, then node id) and handed, with their options in
  the same order and the same prices to the last bit (the same float operations in the same order), to the engine's
  own set search, fill and judgement.

So a plan here equals ``plan``'s on everything but the explanations (quotes carry none). Requests this path does not
cover return None and go to ``plan``: lines with a due date (lateness needs a delivery date per node), packs and
ship-complete lines, nodes that ship whole cases only. tests/unit/test_fast_routing.py checks the equality on the
routing benchmark's orders and on random carts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from routing.cost import package_cost, unit_cost
from routing.eligibility import same_day_open, static_place_reason
from routing.geo import haversine_km
from routing.engine import MAX_CANDIDATES, _area_preference, _groups, _judge, _Run, _search, _take
from routing.model import CostModel, NetworkView, RouteLine, RouteRequest, RouteResult
from models.status import DeliveryMethod


class DenseStock(Mapping):
    """Available-to-sell of a request's SKUs as one vector over node columns per SKU; reads as the
    ``{(node_id, sku): units}`` mapping the rest of the engine uses (positions with nothing read as absent)."""

    def __init__(self, columns: dict[str, int], node_ids: list[str], dense: dict[str, np.ndarray]):
        self.columns, self.node_ids, self.dense = columns, node_ids, dense

    @classmethod
    def from_mapping(cls, available: Mapping, skus) -> "DenseStock":
        node_ids = sorted({n for n, _ in available})
        columns = {n: i for i, n in enumerate(node_ids)}
        dense = {s: np.zeros(len(node_ids), dtype=np.int64) for s in skus}
        for (n, s), units in available.items():
            if s in dense:
                dense[s][columns[n]] = units
        return cls(columns, node_ids, dense)

    def get(self, key, default=None):
        node_id, sku = key
        vector, column = self.dense.get(sku), self.columns.get(node_id)
        if vector is None or column is None or column >= len(vector) or vector[column] <= 0:
            return default
        return int(vector[column])

    def __getitem__(self, key):
        units = self.get(key)
        if units is None:
            raise KeyError(key)
        return units

    def __iter__(self) -> Iterator:
        for sku, vector in self.dense.items():
            for column in np.flatnonzero(vector > 0).tolist():
                yield self.node_ids[column], sku

    def __len__(self) -> int:
        return sum(int(np.count_nonzero(v > 0)) for v in self.dense.values())

    def matrix(self, skus: list[str], columns: np.ndarray) -> np.ndarray:
        """The SKUs' units (a row each) at these node columns (0 where a node is not a column)."""
        width = len(next(iter(self.dense.values()))) if self.dense else 0  # one width: read at one instant
        zero = np.zeros(width, dtype=np.int64)
        rows = np.stack([self.dense.get(s, zero) for s in skus])
        inside = columns < width
        out = np.zeros((len(skus), len(columns)), dtype=np.int64)
        out[:, inside] = rows[:, columns[inside]]
        return out


@dataclass
class _Table:
    """The nodes that may ship to one destination by one method for one channel, whatever the cart."""

    ids: list[str]
    unit: np.ndarray  # landed unit cost (routing.cost.unit_cost)
    preference: np.ndarray  # routing rules' priority groups and partner reliability, per unit
    area: np.ndarray  # the store mapping's rank below the first, per unit
    rank: np.ndarray  # place in node id order (ties in price go to the lower id, as in plan)
    same_day: bool
    limited: list[int]  # nodes with a capacity (checked per request)
    ships_whole: bool
    columns: Optional[np.ndarray] = None  # each node's stock column (per DenseStock layout)
    columns_of: Any = None
    columns_len: int = 0
    sku_ok: Optional[dict] = None  # sku → nodes the SKU's rules allow (types, handling, minimum stock)


class Tables:
    """Per-destination tables of one network epoch (the network memo's read and the routing rules' version)."""

    def __init__(self, limit: int = 20_000):
        self.limit = limit
        self.tables: dict[tuple, Any] = {}

    def near(self, capability: str, lat: float, lon: float, radius_km: float, net: NetworkView
             ) -> list[tuple[str, float]]:
        """Enabled nodes with this capability within the radius of a place, with their distance (the stores a quote
        offers pickup or curbside at are chosen among them)."""
        key = ("near", capability, lat, lon, radius_km)
        hit = self.tables.get(key)
        if hit is None:
            hit = self.tables[key] = [
                (n.node_id, km) for n in net.nodes.values()
                if n.enabled and capability in n.capabilities and (km := haversine_km(n.lat, n.lon, lat, lon)) <= radius_km]
        return hit

    def table(self, line: RouteLine, net: NetworkView, model: CostModel) -> _Table:
        key = (line.method, line.postal_code, line.lat, line.lon, line.pickup_node_id)
        t = self.tables.get(key)
        if t is None:
            if len(self.tables) >= self.limit:
                self.tables.clear()
            t = self.tables[key] = _build(line, net, model)
        return t


def _build(line: RouteLine, net: NetworkView, model: CostModel) -> _Table:
    nodes = [n for n in net.nodes.values() if static_place_reason(n, line, net, model) is None]
    area = _area_preference(line, net)
    ids = [n.node_id for n in nodes]
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return _Table(
        ids=ids, unit=np.array([unit_cost(n, line, model) for n in nodes], dtype=np.float64),
        preference=np.array([net.preference.get(i, 0.0) for i in ids], dtype=np.float64),
        area=np.array([area.get(i, 0.0) for i in ids], dtype=np.float64), rank=rank,
        same_day=line.method == DeliveryMethod.same_day,
        limited=[k for k, n in enumerate(nodes) if n.remaining_units is not None or n.remaining_orders is not None],
        ships_whole=any(n.ships_whole for n in nodes))


def _sku_ok(t: _Table, sku: str, net: NetworkView) -> np.ndarray:
    """Nodes the SKU's rules allow and the minimum stock a node of its type must hold (per node)."""
    if t.sku_ok is None:
        t.sku_ok = {}
    hit = t.sku_ok.get(sku)
    if hit is None:
        rules = net.skus.get(sku)
        allowed, minimum = [], []
        for i in t.ids:
            node = net.nodes[i]
            ok = not (rules and rules.allowed_node_types and node.type not in rules.allowed_node_types)
            for handling in (rules.handling if rules else ()):
                types = net.handling_node_types.get(handling)
                if types and node.type not in types:
                    ok = False
            allowed.append(ok)
            minimum.append(net.min_stock.get(node.type, 0))
        hit = t.sku_ok[sku] = (np.array(allowed, dtype=bool), np.array(minimum, dtype=np.int64))
    return hit


def quick_plan(req: RouteRequest, net: NetworkView, model: CostModel, tables: Tables) -> Optional[RouteResult]:
    """``plan(req, net, model)`` without explanations, or None when the request needs the full engine."""
    stock = net.available
    if not isinstance(stock, DenseStock):
        return None
    if any(l.due is not None or l.pack != 1 or l.complete for l in req.lines):
        return None
    groups, digital = _groups(req, net)
    run = _Run(stock={}, capacity={}, deadline=None)
    for group in groups:
        line0 = group.lines[0]
        t = tables.table(line0, net, model)
        if t.ships_whole:
            return None
        if t.columns_of is not stock.columns or t.columns_len != len(stock.columns):
            t.columns = np.array([stock.columns.get(i, 1 << 30) for i in t.ids], dtype=np.int64)
            t.columns_of, t.columns_len = stock.columns, len(stock.columns)
        place = _place(t, req, net)
        # One row per line, one column per node of the table.
        units = stock.matrix([l.sku for l in group.lines], t.columns)
        rules = [_sku_ok(t, l.sku, net) for l in group.lines]
        ok = place & np.stack([a for a, _ in rules]) & (units > 0) & (units >= np.stack([m for _, m in rules]))
        for row, line in enumerate(group.lines):
            if line.exclude_nodes:
                ok[row] &= np.array([i not in line.exclude_nodes for i in t.ids], dtype=bool)
        later = (np.array([[net.opportunity.get((i, l.sku), 0.0) for i in t.ids] for l in group.lines],
                          dtype=np.float64) if net.opportunity else np.zeros(units.shape))
        # The engine's sum, term by term: ((unit + opportunity) + preference) + area.
        price = ((t.unit + later) + t.preference) + t.area
        cheapest = np.where(ok, price, np.inf).min(axis=0)
        candidates = np.flatnonzero(np.isfinite(cheapest))
        ranked = candidates[np.lexsort((t.rank[candidates], cheapest[candidates]))][:MAX_CANDIDATES].tolist()
        # The ranked columns as Python numbers (indexing an array element by element costs more than the copy).
        ids, unit = [t.ids[k] for k in ranked], t.unit[ranked].tolist()
        for line, line_ok, line_price, line_later, line_units in zip(
                group.lines, ok[:, ranked].tolist(), price[:, ranked].tolist(), later[:, ranked].tolist(),
                units[:, ranked].tolist()):
            group.options[line.line_id] = sorted(
                (line_price[j], ids[j], unit[j], line_later[j]) for j in range(len(ids)) if line_ok[j])
            for node_id, units_there in zip(ids, line_units):
                key = (node_id, line.sku)
                if key not in run.stock:  # an earlier group's take stays taken
                    run.stock[key] = units_there
        for node_id in ids:
            if node_id not in run.capacity:
                run.capacity[node_id] = net.nodes[node_id].remaining_units
        group.package = package_cost(line0, model)
        if run.deadline is None and req.budget_ms is not None:
            run.deadline = time.perf_counter() + req.budget_ms / 1000
        cost, _, chosen, _ = _search(group, ids, req, model, run, _singles(group, ids, run, model))
        _take(group, chosen, cost, net, model, run)
    return _judge(req, net, run, digital)


def _place(t: _Table, req: RouteRequest, net: NetworkView) -> np.ndarray:
    """The table's nodes this request may use: its exclusions, today's capacity, today's same-day cutoff."""
    ok = np.ones(len(t.ids), dtype=bool)
    if req.to_node:
        ok &= np.array([i == req.to_node for i in t.ids], dtype=bool)
    if req.exclude_nodes:
        ok &= np.array([i not in req.exclude_nodes for i in t.ids], dtype=bool)
    for k in t.limited:
        node = net.nodes[t.ids[k]]
        if (node.remaining_units is not None and node.remaining_units <= 0) or (
                node.remaining_orders is not None and node.remaining_orders <= 0):
            ok[k] = False
    if t.same_day:
        for k in np.flatnonzero(ok).tolist():
            if not same_day_open(net.nodes[t.ids[k]], req, net):
                ok[k] = False
    return ok


def same_decision(full: RouteResult, quick: Optional[RouteResult]) -> str:
    """"" when the quote engine's plan equals the full engine's on everything but explanations, else what differs
    ("declined": it left the request to the full engine)."""
    if quick is None:
        return "declined"
    for what in ("feasible", "reason", "unfilled", "cost", "exact", "lower_bound", "search_cost", "future_cost",
                 "digital", "distance_km"):
        if getattr(full, what) != getattr(quick, what):
            return f"{what}: {getattr(full, what)!r} vs {getattr(quick, what)!r}"
    if sorted(full.assignments, key=repr) != sorted(quick.assignments, key=repr):
        return f"assignments: {full.assignments} vs {quick.assignments}"
    return ""


def _singles(group, names: list[str], run: _Run, model: CostModel) -> list[tuple[float, float, bool, bool]]:
    """(cost, landed, took anything, filled it all) of filling the group from each ranked node alone: engine._fill for a set of one,
    node by node without the set bookkeeping (a dozen nodes: plain loops beat array calls), the same float operations
    in the same order, so equal to the bit."""
    offers: dict[str, dict[str, tuple[float, float]]] = {}  # node → line_id → (price, landed unit)
    for line in group.lines:
        for price, n, unit, _ in group.options[line.line_id]:
            mine = offers.get(n)
            if mine is None:
                mine = offers[n] = {}
            mine[line.line_id] = (price, unit)
    penalty, out, none = model.unfilled_penalty, [], {}
    for n in names:
        mine = offers.get(n, none)
        cap = run.capacity.get(n)
        used = took = 0
        taken: dict[str, int] = {}
        cost = landed = 0.0
        unfilled = False
        for line in group.lines:
            left = line.qty
            offer = mine.get(line.line_id)
            if offer is not None:
                have = run.stock.get((n, line.sku), 0) - taken.get(line.sku, 0)
                take = min(left, have, left if cap is None else cap - used)
                if take > 0:
                    taken[line.sku] = taken.get(line.sku, 0) + take
                    used += take
                    left -= take
                    took += take
                    cost += take * offer[0]
                    landed += take * offer[1]
            if left:
                unfilled = True
                cost += left * penalty
                landed += left * penalty
        packages = took if group.ship_alone else (1 if took else 0)
        fixed = group.package * packages + (model.unfilled_order_fee if unfilled else 0.0)
        out.append((cost + fixed, landed + fixed, took > 0, not unfilled))
    return out
