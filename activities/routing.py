"""routing.*: plan an order (routing/sourcing.py), re-price scarce stock from the forecast."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.deps import Deps
from models.messages import BidPriceRefresh, Plan, PlanRequest
from routing.sourcing import plan_request, refresh_bid_prices


class RoutingActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="routing.plan")
    async def plan(self, req: PlanRequest) -> Plan:
        return await plan_request(self.deps.db, req, self.deps.routing_budget_ms)

    @activity.defn(name="routing.refresh_bid_prices")
    async def refresh_bid_prices(self, at: datetime) -> BidPriceRefresh:
        return await refresh_bid_prices(self.deps.db, at)
