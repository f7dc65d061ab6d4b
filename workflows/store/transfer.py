"""The transfer workflow (type "Transfer"): ship to store, the leg that brings a pickup's units to the store.

released ─accept→ accepted ─pick→ picked ─pack→ packed ─ship→ in_transit ─receive→ received_at_store
The source node ships to the pickup store (a label, the units leave the source's stock: in transit they are
sellable at neither node); the store's partner key receives them: they land on its shelf held for the pickup,
which the order then starts at the store with the units in hand (its next step ``ready``). No payment moves
here: the customer pays when they collect.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        FulfillmentInput, FulfillmentState, MilestoneResult, ReceiveTransfer, ShipIn,
    )
    from models.status import FULFILLMENT_PATHS, MILESTONES, FulfillmentKind, FulfillmentStatus as FS
    import workflows.activities as activities
    from workflows.fulfillment import FulfillmentWorkflow


@workflow.defn(name="Transfer")
class TransferWorkflow(FulfillmentWorkflow):
    KIND = FulfillmentKind.transfer
    PATH = FULFILLMENT_PATHS[FulfillmentKind.transfer]
    TARGET = MILESTONES[FulfillmentKind.transfer]
    SHIPPED = FS.in_transit
    DONE = frozenset({FS.received_at_store})
    TELLS = frozenset({FS.in_transit})

    @workflow.run
    async def run(self, inp: FulfillmentInput) -> FulfillmentState:
        return await super().run(inp)

    async def do_ship(self, body: ShipIn) -> None:
        self.shipped(await self.dispatch(body))  # no capture: the customer pays at collection
        await self.change(FS.in_transit)

    @workflow.update
    async def receive(self) -> MilestoneResult:
        return await self.milestone("receive", self.do_receive)

    @receive.validator
    def _v_receive(self) -> None:
        self.admissible("receive")

    async def do_receive(self) -> None:
        s, inp = self.s, self.inp
        assert inp.to_node_id is not None and inp.pickup_id is not None
        await activities.receive_transfer(ReceiveTransfer(order_id=inp.order_id, transfer_id=inp.fulfillment_id,
                                                          pickup_id=inp.pickup_id, node_id=inp.to_node_id,
                                                          lines=s.lines))
        s.delivered_at = workflow.now()
        await self.change(FS.received_at_store)

    def waits(self) -> dict[FS, str]:
        s = self.s
        return {**super().waits(), FS.in_transit: f"{s.to_node_id} to receive it ({s.carrier} {s.tracking})"}
