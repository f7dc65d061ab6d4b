"""routing.plan: read live availability, ask the engine, date the result."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import text
from temporalio import activity

from activities.deps import Deps
from nodal.db import Database
from activities.network import load_network, node_info, postal_coordinates
from models.messages import Allocation, Candidate, LineQty, Plan, PlanRequest
from models.status import DeliveryMethod
from nodal.logging import get_logger
from promise import promised_by, ship_by
from routing import CostModel, RouteLine, RouteRequest, plan
from routing.cost import distance_km, package_cost, unit_cost

COSTS = CostModel()


async def plan_request(db: Database, req: PlanRequest) -> Plan:
    postal = sorted({l.delivery.address.postal_code for l in req.lines if l.delivery.address})
    async with db.engine.connect() as conn:
        coords = await postal_coordinates(conn, postal)
        net = await load_network(conn, sorted({l.sku for l in req.lines}), postal, req.at, req.channel, req.hold_id,
                                 req.customer_tier)
    route_lines = []
    for l in req.lines:
        addr = l.delivery.address
        lat = lon = None
        if addr is not None:
            lat, lon = (addr.lat, addr.lon) if addr.lat is not None and addr.lon is not None else coords.get(
                addr.postal_code, (None, None))
        route_lines.append(RouteLine(
            line_id=l.line_id, sku=l.sku, qty=l.qty, method=l.delivery.method.value,
            postal_code=addr.postal_code if addr else None, lat=lat, lon=lon,
            pickup_node_id=l.delivery.pickup_node_id, exclude_nodes=frozenset(l.exclude_nodes),
        ))
    result = plan(RouteRequest(
        lines=tuple(route_lines), ship_complete=req.policy.ship_complete, fill_or_kill=req.policy.fill_or_kill,
        min_fill_rate=req.policy.min_fill_rate, max_splits=req.policy.max_splits,
        exclude_nodes=frozenset(req.exclude_nodes), to_node=req.to_node, at=req.at,
    ), net, COSTS)

    by_line = {l.line_id: l for l in route_lines}
    groups: dict[tuple[str, str, str | None], list[LineQty]] = defaultdict(list)
    for a in result.assignments:
        line = by_line[a.line_id]
        groups[(a.node_id, line.method, line.postal_code)].append(LineQty(line_id=a.line_id, sku=a.sku, qty=a.qty))
    allocations = []
    for (node_id, method, postal_code), lines in groups.items():
        node = net.nodes[node_id]
        line = by_line[lines[0].line_id]
        km = distance_km(node, line)
        m = DeliveryMethod(method)
        allocations.append(Allocation(
            node_id=node_id, method=m, postal_code=postal_code, lines=lines, distance_km=round(km, 1),
            cost=Decimal(str(round(package_cost(line, COSTS) + sum(
                q.qty * unit_cost(node, by_line[q.line_id], COSTS) for q in lines), 2))),
            ship_by=ship_by(node, req.at) if m not in (DeliveryMethod.pickup, DeliveryMethod.curbside) else None,
            promised_by=promised_by(node, m, km, req.at),
        ))
    backorder_dates = await _backorder_dates(db, result.unfilled, by_line, net) if result.unfilled else {}
    candidates = [Candidate(node_id=v.node_id, outcome=v.outcome, reason=v.reason,
                            cost=None if v.cost is None else Decimal(str(v.cost))) for v in result.verdicts]
    get_logger(order_id=req.order_id).info(
        "routing.planned", feasible=result.feasible, nodes=[a.node_id for a in allocations], cost=result.cost)
    return Plan(
        feasible=result.feasible, reason=result.reason, allocations=allocations,
        unfilled=[LineQty(line_id=k, sku=by_line[k].sku, qty=v) for k, v in result.unfilled.items()],
        backorder_dates=backorder_dates,
        total_cost=Decimal(str(round(result.cost, 2))), candidates=candidates,
    )


async def _backorder_dates(db: Database, unfilled: dict[str, int], lines: dict, net) -> dict:
    """Date units nobody has from the earliest incoming supply that covers them (never sold before it lands)."""
    skus = sorted({lines[l].sku for l in unfilled})
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT s.sku, s.node_id, s.qty, s.eta, n.* FROM incoming_supply s JOIN nodes n USING (node_id)"
            " WHERE s.sku = ANY(:s) AND s.qty > 0 AND n.enabled ORDER BY s.eta"), {"s": skus})).all()
    dates = {}
    for line_id, qty in unfilled.items():
        line, covered = lines[line_id], 0
        for r in rows:
            if r.sku != line.sku:
                continue
            covered += r.qty
            if covered >= qty:
                node = node_info(r)
                dates[line_id] = promised_by(node, DeliveryMethod(line.method), distance_km(node, line), r.eta)
                break
    return dates


class RoutingActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="routing.plan")
    async def plan(self, req: PlanRequest) -> Plan:
        return await plan_request(self.deps.db, req)
