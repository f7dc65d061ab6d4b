"""BidPriceWorkflow: started by a Temporal schedule, it re-prices scarce stock from the demand forecast.

Stock moves with every order, so the future cost of taking a unit at a node drifts; the schedule re-solves
the forecast LP on the stock left, and `PUT /forecast` triggers it at once.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import BidPriceRefresh
    import workflows.activities as activities

BID_PRICE_SCHEDULE = "nodal-bid-prices"


@workflow.defn
class BidPriceWorkflow:
    @workflow.run
    async def run(self) -> BidPriceRefresh:
        return await activities.refresh_bid_prices(workflow.now())
