"""Choose the cheapest node set for an order under its policy, and say why every other node lost.

v1 is exact for ordinary orders: it enumerates node sets of up to ``max_splits + 1`` nodes per
delivery group among the best candidates, fills each set greedily by unit cost (optimal for a
fixed set, because unit costs are separable), and keeps the cheapest. Fixed package costs make the
choice of set the hard part; the candidate cap bounds the enumeration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations
from typing import NamedTuple, Optional

from routing.cost import distance_km, package_cost, quote_line, unit_cost
from routing.eligibility import line_reason, place_reason, whole_step
from routing.model import (
    Assignment, CostModel, NetworkView, NodeInfo, NodeVerdict, RouteLine, RouteRequest, RouteResult,
)

MAX_CANDIDATES = 12

NO_STOCK = "no eligible node has stock"


def _group_key(line: RouteLine, net: NetworkView, per_line: bool = False) -> tuple:
    # Lines going to the same place the same way can share a package; a ship-alone item shares none,
    # and under line-level sourcing every line is its own group.
    rules = net.skus.get(line.sku)
    alone = line.line_id if per_line or (rules is not None and "ship_alone" in rules.handling) else None
    return (line.method, line.postal_code, line.lat, line.lon, line.pickup_node_id, alone)


class _Group:
    def __init__(self, lines: list[RouteLine]):
        self.lines = lines
        self.eligible: dict[str, list[str]] = {}  # line_id → node ids
        # line_id → (price, node, landed unit cost, future cost), cheapest price first
        self.options: dict[str, list[tuple[float, str, float, float]]] = {}
        self.package = 0.0
        self.ship_alone = False  # every unit in its own package
        # line_id → {node: eaches per step} where a node must get whole packs (lines ordered by the case, nodes
        # that ship only whole cases); absent: any number of eaches.
        self.steps: dict[str, dict[str, int]] = {}


def _priced(node_id: str, line: RouteLine, net: NetworkView, model: CostModel) -> float:
    """A unit's landed cost plus what taking it is expected to cost later orders (0 without a forecast)
    and the node's priority-group preference (0 without routing rules)."""
    return (unit_cost(net.nodes[node_id], line, model) + net.opportunity.get((node_id, line.sku), 0.0)
            + net.preference.get(node_id, 0.0))


def _arrival(node: NodeInfo, line: RouteLine, req: RouteRequest, net: NetworkView) -> Optional[date]:
    """The day this node would deliver to the line's destination (the same for every line of its group)."""
    q = quote_line(node, line, net, req.at)
    return q.promised_by.date() if q else None


class _Filled(NamedTuple):
    cost: float  # with the future and priority preferences priced in: what the search minimises
    landed: float  # what serving the order costs today
    future: float  # what the units taken are expected to cost later orders
    assignments: list[Assignment]
    unfilled: dict[str, int]


def _fill(
    nodes: tuple[str, ...],
    group: _Group,
    stock: dict[tuple[str, str], int],
    capacity: dict[str, Optional[int]],
    model: CostModel,
) -> _Filled:
    """Fill a fixed node set line by line from its cheapest node (optimal for a fixed set: unit costs are
    separable); ``group.options`` holds each line's eligible nodes, cheapest first, with their prices.
    """
    members = set(nodes)
    taken: dict[tuple[str, str], int] = {}
    used_capacity: dict[str, int] = {}
    assignments: list[Assignment] = []
    unfilled: dict[str, int] = {}
    cost = landed = future = 0.0
    used: set[str] = set()
    for line in group.lines:
        left = line.qty
        steps = group.steps.get(line.line_id)
        # The empty set (what losing the sale costs, priced once per group) takes from no option.
        for price, n, unit, later in group.options[line.line_id] if members else ():
            if left == 0:
                break
            if n not in members:
                continue
            cap = capacity[n]
            have = stock.get((n, line.sku), 0) - taken.get((n, line.sku), 0)
            room = left if cap is None else cap - used_capacity.get(n, 0)
            take = min(left, have, room)
            if steps is not None and (step := steps.get(n, 1)) > 1:
                take -= take % step
            if take <= 0:
                continue
            taken[(n, line.sku)] = taken.get((n, line.sku), 0) + take
            used_capacity[n] = used_capacity.get(n, 0) + take
            left -= take
            used.add(n)
            cost += take * price
            landed += take * unit
            future += take * later
            assignments.append(Assignment(n, line.line_id, line.sku, take))
        if left:
            unfilled[line.line_id] = left
            cost += left * model.unfilled_penalty
            landed += left * model.unfilled_penalty
    packages = sum(a.qty for a in assignments) if group.ship_alone else len(used)
    fixed = group.package * packages + (model.unfilled_order_fee if unfilled else 0.0)
    return _Filled(cost + fixed, landed + fixed, future, assignments, unfilled)


@dataclass
class _Run:
    """What one plan accumulates across its delivery groups."""

    stock: dict[tuple[str, str], int]
    capacity: dict[str, Optional[int]]
    deadline: Optional[float]
    reasons: dict[str, str] = field(default_factory=dict)  # node → why it was ineligible (first rule failed)
    verdicts: dict[str, NodeVerdict] = field(default_factory=dict)
    distances: dict[str, float] = field(default_factory=dict)
    late_days: dict[str, int] = field(default_factory=dict)  # node → days it would deliver after a line's due date
    assignments: list[Assignment] = field(default_factory=list)
    unfilled: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    searched: float = 0.0
    lower_bound: float = 0.0
    future_cost: float = 0.0
    exact: bool = True


def plan(req: RouteRequest, net: NetworkView, model: CostModel = CostModel()) -> RouteResult:
    """Per delivery group: who may serve each line → price every line's options → rank the candidates →
    search node sets for the cheapest fill → take it and explain; then judge the whole against the policy."""
    groups, digital = _groups(req, net)
    run = _Run(stock={k: v for k, v in net.available.items() if v > 0},
               capacity={n.node_id: n.remaining_units for n in net.nodes.values()}, deadline=None)
    for group in groups:
        candidates = _price_options(group, req, net, model, run)
        ranked = _rank(group, candidates, run)
        if run.deadline is None and req.budget_ms is not None:
            # The budget is for searching node sets; pricing a 20,000-line order's options is not search.
            run.deadline = time.perf_counter() + req.budget_ms / 1000
        cost, subset, chosen, best_with = _search(group, ranked, req, model, run)
        _take(group, chosen, cost, net, model, run)
        _explain_group(run.verdicts, ranked, subset, best_with, chosen)
    return _judge(req, net, run, digital)


def _groups(req: RouteRequest, net: NetworkView) -> tuple[list[_Group], dict[str, int]]:
    """Lines by delivery group (digital ones apart: they need no node)."""
    groups: dict[tuple, _Group] = {}
    digital = {l.line_id: l.qty for l in req.lines if (r := net.skus.get(l.sku)) is not None and r.digital}
    for line in req.lines:
        if line.line_id in digital:
            continue
        group = groups.setdefault(_group_key(line, net, req.per_line), _Group([]))
        group.lines.append(line)
        rules = net.skus.get(line.sku)
        group.ship_alone = rules is not None and "ship_alone" in rules.handling
    return list(groups.values()), digital


def _area_preference(line: RouteLine, net: NetworkView) -> dict[str, float]:
    """The store mapping's priorities for the group's destination, as a cost per unit per rank below its first."""
    area = net.service_areas.get(line.postal_code or "")
    if not area or not net.area_step:
        return {}
    first = min(area.values())
    return {node_id: (rank - first) * net.area_step for node_id, rank in area.items() if rank > first}


def _price_options(group: _Group, req: RouteRequest, net: NetworkView, model: CostModel, run: _Run) -> set[str]:
    """Each line's eligible nodes, cheapest first, priced with lateness against its due date; returns the
    nodes eligible for some line."""
    candidates: set[str] = set()
    # Where the group goes is the same for all its lines: each node is judged on that once.
    placed = []
    for node in net.nodes.values():
        why = place_reason(node, group.lines[0], req, net, model)
        if why is None:
            placed.append(node)
        else:
            run.reasons.setdefault(node.node_id, why)
    area = _area_preference(group.lines[0], net)
    arrivals: dict[str, Optional[date]] = {}  # node → its delivery day, when a line is due
    for line in group.lines:
        ok = []
        for node in placed:
            why = line_reason(node, line, net)
            if why is None:
                ok.append(node.node_id)
            else:
                run.reasons.setdefault(node.node_id, why)
        group.eligible[line.line_id] = ok
        if steps := _steps(line, ok, net):
            group.steps[line.line_id] = steps
        late: dict[str, int] = {}
        if line.due is not None and req.at is not None:
            for n in ok:
                if n not in arrivals:
                    arrivals[n] = _arrival(net.nodes[n], line, req, net)
                if arrivals[n] is not None and arrivals[n] > line.due:
                    late[n] = (arrivals[n] - line.due).days
        for n, d in late.items():
            run.late_days[n] = max(run.late_days.get(n, 0), d)
        penalty = {n: d * model.late_per_unit_day for n, d in late.items()}
        group.options[line.line_id] = sorted(
            (_priced(n, line, net, model) + penalty.get(n, 0.0) + area.get(n, 0.0), n,
             unit_cost(net.nodes[n], line, model) + penalty.get(n, 0.0),
             net.opportunity.get((n, line.sku), 0.0)) for n in ok)
        candidates.update(ok)
    group.package = package_cost(group.lines[0], model)
    return candidates


def _steps(line: RouteLine, nodes: list[str], net: NetworkView) -> dict[str, int]:
    """Whole packs per node, where a node must get them (routing.eligibility.whole_step)."""
    if line.pack == 1 and not line.complete and not any(net.nodes[n].ships_whole for n in nodes):
        return {}
    return {n: step for n in nodes if (step := whole_step(net.nodes[n], line, net)) > 1}


def _rank(group: _Group, candidates: set[str], run: _Run) -> list[str]:
    """The candidates whose cheapest unit is cheapest; beyond the cap the set is too wide to matter."""
    cheapest: dict[str, float] = {}
    for options in group.options.values():
        for price, n, _, _ in options:
            cheapest[n] = min(cheapest.get(n, price), price)
    ranked = sorted(candidates, key=lambda n: (cheapest[n], n))
    for n in ranked[MAX_CANDIDATES:]:
        run.reasons.setdefault(n, "farther than the closest candidates")
    ranked = ranked[:MAX_CANDIDATES]
    # Only the ranked candidates can be in a set: fill from their options alone (a 5,000-line B2B order over
    # hundreds of nodes would otherwise walk every node's option per line, per set tried).
    keep = set(ranked)
    for line_id, options in group.options.items():
        group.options[line_id] = [o for o in options if o[1] in keep]
    return ranked


def _search(group: _Group, ranked: list[str], req: RouteRequest, model: CostModel, run: _Run,
            singles: Optional[list[tuple[float, float, bool, bool]]] = None,
            ) -> tuple[float, tuple[str, ...], _Filled, dict[str, _Filled]]:
    """The cheapest node set of up to max_splits + 1 nodes (one for ship complete), within the time budget.

    Losing the sale has a price too: a plan is taken only if it lands for less (stock is never held back from
    a customer here and now for one the forecast merely expects); among those, the cheapest with the future
    priced in wins."""
    max_nodes = 1 if req.ship_complete else req.max_splits + 1
    lost_plan = _fill((), group, run.stock, run.capacity, model)
    lost = lost_plan.cost
    best: tuple[float, int, tuple[str, ...], _Filled] = (lost, 0, (), lost_plan)
    served = False
    best_with: dict[str, _Filled] = {}
    # Every unit costs at least its cheapest option (or being lost); every plan pays a package or the lost-sale
    # fee. (Options were trimmed to the ranked candidates, whose cheapest option is the line's cheapest.)
    # A line's options are cheapest first: the first is its cheapest unit.
    penalty = model.unfilled_penalty
    run.lower_bound += sum(l.qty * (min(o[0][0], penalty) if (o := group.options[l.line_id]) else penalty)
                           for l in group.lines) + min(group.package, model.unfilled_order_fee)
    alone, floor = False, None
    for size in range(1, min(max_nodes, len(ranked)) + 1):
        if size * group.package >= (best[0] if served else lost):
            break  # the packages alone cost more (every other term is ≥ 0)
        if size == 2 and singles is not None and served and alone:
            floor = _floor_without(group, best[2][0], model)
        if floor is not None and floor + size * group.package > best[0] * (1 + 1e-9) + 1e-9:
            break  # no set this size can come near the single node that fills it all (see _floor_without)
        # Single nodes are always priced; beyond them the budget may stop the search (best plan kept).
        if size > 1 and run.deadline is not None and time.perf_counter() > run.deadline:
            run.exact = False
            break
        for i, subset in enumerate(combinations(ranked, size)):
            if size > 1 and run.deadline is not None and time.perf_counter() > run.deadline:
                run.exact = False
                break
            if size == 1 and singles is not None:
                # Each single node's fill worked out beforehand (routing/fast.py, the same arithmetic): only the
                # winner is filled again, for its assignments, once the sizes of one are done. No explanations.
                cost, landed, took, complete = singles[i]
                if took and landed < lost and (not served or (cost, size, subset) < best[:3]):
                    best, served = (cost, size, subset, None), True
                    alone = complete
                continue
            filled = _fill(subset, group, run.stock, run.capacity, model)
            if len({a.node_id for a in filled.assignments}) < size:
                continue  # a node in the set took nothing: the smaller set covers it
            for n in subset:
                if n not in best_with or filled.cost < best_with[n].cost:
                    best_with[n] = filled
            key = (filled.cost, size, subset)
            if filled.landed < lost and (not served or key < best[:3]):
                best, served = (filled.cost, size, subset, filled), True
    cost, _, subset, chosen = best
    if chosen is None:  # a single node chosen from ``singles``
        chosen = _fill(subset, group, run.stock, run.capacity, model)
    return cost, subset, chosen, best_with


def _floor_without(group: _Group, winner: str, model: CostModel) -> Optional[float]:
    """When one node filled the whole group alone and comes first in every line's options (the order _fill takes
    them in), a set of several nodes either holds it — then it takes every unit first, the others nothing, and
    _search skips the set — or not, and pays at least each line's next price (or the lost-sale penalty) per unit:
    that sum is returned. None: no such proof (a line the winner does not come first for)."""
    floor = 0.0
    for line in group.lines:
        options = group.options[line.line_id]
        if not options or options[0][1] != winner:
            return None
        other = options[1][0] if len(options) > 1 else float("inf")
        floor += line.qty * min(other, model.unfilled_penalty)
    return floor


def _take(group: _Group, chosen: _Filled, cost: float, net: NetworkView, model: CostModel, run: _Run) -> None:
    """The chosen fill leaves the stock and capacity the next group sees."""
    for a in chosen.assignments:
        run.stock[(a.node_id, a.sku)] -= a.qty
        if run.capacity[a.node_id] is not None:
            run.capacity[a.node_id] -= a.qty  # type: ignore[operator]
        run.distances[a.node_id] = round(distance_km(net.nodes[a.node_id], group.lines[0]), 1)
    run.assignments.extend(chosen.assignments)
    for line_id, qty in chosen.unfilled.items():
        run.unfilled[line_id] = run.unfilled.get(line_id, 0) + qty
    run.future_cost += chosen.future
    run.total += cost - sum(chosen.unfilled.values()) * model.unfilled_penalty
    run.searched += cost


def _judge(req: RouteRequest, net: NetworkView, run: _Run, digital: dict[str, int]) -> RouteResult:
    """The order's policy on the whole plan, and every node's verdict."""
    ordered = sum(l.qty for l in req.lines)
    filled = ordered - sum(run.unfilled.values())
    feasible, reason = True, ""
    if filled == 0:
        feasible, reason = False, NO_STOCK
    elif run.unfilled and req.fill_or_kill:
        feasible, reason = False, "fill or kill: not every unit can be filled now"
    elif run.unfilled and req.ship_complete:
        feasible, reason = False, "ship complete: no single node can serve every unit"
    elif ordered and filled / ordered < req.min_fill_rate:
        feasible, reason = False, f"fill rate {filled / ordered:.0%} below the minimum {req.min_fill_rate:.0%}"
    assignments, unfilled = run.assignments, run.unfilled
    if not feasible:
        assignments, unfilled, digital = [], {l.line_id: l.qty for l in req.lines}, {}
    verdicts = run.verdicts
    for node_id, days in run.late_days.items():
        v = verdicts.get(node_id)
        if v is not None:
            verdicts[node_id] = NodeVerdict(node_id, v.outcome, f"{v.reason}; delivers {days} day"
                                            f"{'s' if days > 1 else ''} after the promise", v.cost)
    for node_id, why in run.reasons.items():
        verdicts.setdefault(node_id, NodeVerdict(node_id, "ineligible", why))
    if not feasible:
        verdicts = {n: v if v.outcome != "chosen" else NodeVerdict(n, "lost", reason, v.cost)
                    for n, v in verdicts.items()}
    return RouteResult(feasible, reason, assignments, unfilled, round(run.total, 4), [verdicts[n] for n in sorted(verdicts)],
                       run.distances, run.exact, round(run.lower_bound, 4), round(run.searched, 4),
                       round(run.future_cost, 4), digital)


_RANK = {"chosen": 0, "lost": 1, "ineligible": 2}


def _explain_group(
    verdicts: dict[str, NodeVerdict],
    ranked: list[str],
    chosen: tuple[str, ...],
    best_with: dict[str, _Filled],
    winner: _Filled,
) -> None:
    """Record, for one delivery group, why each candidate won or lost; a node chosen anywhere is chosen."""
    for node_id in ranked:
        if node_id in chosen:
            v = NodeVerdict(node_id, "chosen", "cheapest landed cost under the order policy", round(winner.cost, 2))
        elif node_id in best_with:
            alt = best_with[node_id]
            extra = alt.cost - winner.cost
            if extra > 0.005 and alt.landed < winner.landed - 0.005 and alt.future > winner.future:
                # Cheaper today, but it takes stock the forecast needs for customers it serves better.
                why = (f"lands {winner.landed - alt.landed:.2f} cheaper today, but its stock is worth "
                       f"{alt.future - winner.future:.2f} more to forecast demand: more expensive by {extra:.2f}")
            elif extra > 0.005:
                why = f"more expensive by {extra:.2f}"
            else:
                why = "not needed: the chosen nodes cover the order"
            v = NodeVerdict(node_id, "lost", why, round(alt.cost, 2))
        else:
            continue
        old = verdicts.get(node_id)
        if old is None or _RANK[v.outcome] < _RANK[old.outcome]:
            verdicts[node_id] = v
