"""BidPriceWorkflow: started by a Temporal schedule, it re-prices scarce stock from the demand forecast.

Stock moves with every order, so the future cost of taking a unit at a node drifts; the schedule re-solves
the forecast LP on the stock left, and `PUT /forecast` triggers it at once.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import BidPriceRefresh
    from workflows.common import call

BID_PRICE_SCHEDULE = "nodal-bid-prices"


@workflow.defn
class BidPriceWorkflow:
    @workflow.run
    async def run(self) -> BidPriceRefresh:
        # A large forecast LP may take a while; it is bounded by the solver's own time limit.
        return await call("routing.refresh_bid_prices", workflow.now(), BidPriceRefresh, timeout_s=300)
