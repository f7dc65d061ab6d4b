"""routing.*: plan an order (routing/sourcing.py), re-price scarce stock from the forecast."""

from __future__ import annotations

import time
from datetime import datetime

from temporalio import activity

from activities import metrics
from activities.deps import Deps
from sqlalchemy import text

from models.messages import BidPriceRefresh, Plan, PlanRequest, ReturnRouteAnswer, ReturnRouteRequest
from routing.returns import ReturnSite, route_return
from routing.sourcing import load_rules, plan_request, refresh_bid_prices


class RoutingActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="routing.plan")
    async def plan(self, req: PlanRequest) -> Plan:
        started = time.perf_counter()
        plan = await plan_request(self.deps.db, req, self.deps.routing_budget_ms)
        metrics.routing_seconds(time.perf_counter() - started, plan.feasible)
        return plan

    @activity.defn(name="routing.return_destination")
    async def return_destination(self, req: ReturnRouteRequest) -> ReturnRouteAnswer:
        """Where a shipped-back return goes, by the routing rules in force (their version is on the answer)."""
        async with self.deps.db.engine.connect() as conn:
            version, rules = await load_rules(conn)
            rows = (await conn.execute(text(
                "SELECT node_id, type, lat, lon, capabilities, enabled FROM nodes"))).all()
            customer = (req.lat, req.lon) if req.lat is not None and req.lon is not None else None
            if customer is None and req.postal_code:
                at = (await conn.execute(text("SELECT lat, lon FROM postal_codes WHERE postal_code = :p"),
                                         {"p": req.postal_code})).first()
                customer = (at.lat, at.lon) if at else None
        sites = [ReturnSite(r.node_id, r.type, r.lat, r.lon, tuple(r.capabilities or ()), r.enabled) for r in rows]
        origin = next((s for s in sites if s.node_id == req.origin_node_id), None)
        if origin is None:  # gone from the network since it shipped: nothing to route by
            return ReturnRouteAnswer(node_id=req.origin_node_id, rule="origin", why="the node is no longer in the "
                                     "network", rules_version=version)
        node_id, rule, why = route_return(origin, rules.return_routes, sites, customer)
        return ReturnRouteAnswer(node_id=node_id, rule=rule, why=why, rules_version=version)

    @activity.defn(name="routing.refresh_bid_prices")
    async def refresh_bid_prices(self, at: datetime) -> BidPriceRefresh:
        return await refresh_bid_prices(self.deps.db, at)
