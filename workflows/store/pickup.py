"""The pickup workflow (type "Pickup"): a pickup or curbside fulfillment at a store.

released ─accept→ accepted ─pick→ picked ─ready→ ready_for_pickup ─collect {pickup_code}→ collected
                                                      └─ not collected when the hold ends → expired
No parcel: no pack, no label, no "shipped" notice. ``ready`` gives the customer a pickup code and starts the
hold (NODAL_PICKUP_HOLD, or the node's calendar.pickup_hold), with a reminder before it ends; ``collect`` with
the right code hands the units over (they leave the stock, the payment is captured then); a line the customer
refuses at the counter is cancelled, its units back on the store's shelf. ``arrived`` (curbside check-in)
changes no status: it puts the customer first in the store's work queue and starts the arrival clock.

A pickup at a store without the stock is preceded by its transfer (workflows/store/transfer.py): the order starts
the pickup once the store has received the units, at ``picked`` (its next step is ``ready``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        ArrivedIn, CollectIn, ConsumeRequest, FulfillmentInput, FulfillmentState, LineQty, MilestoneResult,
        Notification,
    )
    from models.status import AWAITING_CUSTOMER, FULFILLMENT_PATHS, MILESTONES, FulfillmentKind, FulfillmentStatus as FS
    import workflows.activities as activities
    from workflows.common import Input, check_within, conflict, invalid, parse, when
    from workflows.fulfillment import FulfillmentWorkflow

CODE_DIGITS = 6


@workflow.defn(name="Pickup")
class PickupWorkflow(FulfillmentWorkflow):
    KIND = FulfillmentKind.pickup
    PATH = FULFILLMENT_PATHS[FulfillmentKind.pickup]
    TARGET = MILESTONES[FulfillmentKind.pickup]
    SHIPPED = None
    DONE = frozenset({FS.ready_for_pickup, FS.collected})  # a pickup is promised ready by its date
    TELLS = frozenset({FS.ready_for_pickup})

    @workflow.init
    def __init__(self, inp: FulfillmentInput) -> None:
        super().__init__(inp)
        self.code: Optional[str] = None  # only the customer hears it (never in the read model or the logs)
        self.reminded = False

    @workflow.run
    async def run(self, inp: FulfillmentInput) -> FulfillmentState:
        return await super().run(inp)

    @workflow.query
    def pickup_code(self) -> Optional[str]:
        """The code, while the pickup waits at the counter: for the customer's own tracking page (its signed link)."""
        return self.code if self.s.status == FS.ready_for_pickup else None

    # ------------------------------------------------------------------ milestones
    @workflow.update
    async def ready(self) -> MilestoneResult:
        return await self.milestone("ready", self.do_ready)

    @ready.validator
    def _v_ready(self) -> None:
        self.admissible("ready")

    @workflow.update
    async def collect(self, raw: Input) -> MilestoneResult:
        body = parse(CollectIn, raw, "collect")
        return await self.milestone("collect", self.do_collect, body)

    @collect.validator
    def _v_collect(self, raw: Input) -> None:
        body = parse(CollectIn, raw, "collect")
        if self.admissible("collect"):
            self.check_code(body)
            if body.lines is not None:
                check_within({l.line_id: l.qty for l in self.s.lines}, body.lines, "this pickup", "collected",
                             "ready")

    @workflow.update
    async def arrived(self, raw: Input) -> MilestoneResult:
        body = parse(ArrivedIn, raw, "arrived")
        self.check_waiting()
        async with self.lock:
            first = self.s.arrived_at is None
            if first:
                self.s.arrived_at = workflow.now()
            self.s.bay, self.s.arrival_note = body.bay, body.note
            self.note("customer_arrived", {"node_id": self.s.node_id, "bay": body.bay, "note": body.note,
                                           "again": not first})
            await self.record()
        return self.result(changed=first)

    @arrived.validator
    def _v_arrived(self, raw: Input) -> None:
        parse(ArrivedIn, raw, "arrived")
        self.check_waiting()

    def check_waiting(self) -> None:
        if self.s.status not in AWAITING_CUSTOMER:
            raise conflict(f"the pickup is {self.s.status.value}: nobody is waiting for it")

    def check_code(self, body: CollectIn) -> None:
        if self.code is not None and body.pickup_code.strip() != self.code:
            raise invalid("wrong pickup code")

    # ------------------------------------------------------------------ what each milestone does
    async def do_ready(self) -> None:
        s, inp = self.s, self.inp
        hold = await activities.pickup_hold(inp.node_id) or inp.pickup_hold
        self.code = str(workflow.random().randint(0, 10 ** CODE_DIGITS - 1)).zfill(CODE_DIGITS)
        s.ready_at, s.hold_until = workflow.now(), workflow.now() + hold
        await self.change(FS.ready_for_pickup)
        await self.tell_customer("ready_for_pickup", {
            "pickup_code": self.code, "node_id": inp.node_id, "method": inp.method.value,
            "hold_until": s.hold_until.isoformat(), "lines": [l.model_dump() for l in s.lines]})

    async def do_collect(self, body: CollectIn) -> None:
        self.check_code(body)  # the code was made after the validator ran when ready and collect came together
        s, inp = self.s, self.inp
        taken = None if body.lines is None else {l.line_id: l.qty for l in body.lines}
        kept, refused, targets = [], [], []
        for l in s.lines:
            got = l.qty if taken is None else min(taken.get(l.line_id, 0), l.qty)
            if got < l.qty:
                refused.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - got))
                targets.append(self.target(l, got, "refused at collection"))
            if got:
                kept.append(LineQty(line_id=l.line_id, sku=l.sku, qty=got))
        if targets:
            await activities.set_reservations(targets, "refused at collection")  # back on the store's shelf
        s.lines = kept
        if refused:
            self.note("pickup_refused", {"lines": [r.model_dump() for r in refused]})
        if not kept:
            await self.change(FS.cancelled, "refused at collection", cancelled=refused)
            return
        await activities.consume(ConsumeRequest(order_id=inp.order_id, fulfillment_id=inp.fulfillment_id,
                                                node_id=inp.node_id, lines=kept))
        payment = await self.capture()
        await self.change(FS.collected, "partly refused at collection" if refused else None, cancelled=refused,
                          payment=payment)
        await self.tell_customer("collected", {"node_id": inp.node_id})

    # ------------------------------------------------------------------ the hold
    def next_deadline(self, accept_by: datetime) -> Optional[tuple[datetime, str]]:
        s = self.s
        if s.status == FS.ready_for_pickup and s.hold_until is not None:
            remind = self.remind_at()
            if remind is not None and not self.reminded:
                return remind, "pickup reminder"
            return s.hold_until, "end of the pickup hold"
        return super().next_deadline(accept_by)

    def remind_at(self) -> Optional[datetime]:
        s = self.s
        if s.ready_at is None or s.hold_until is None:
            return None
        lead = min(self.inp.pickup_reminder, (s.hold_until - s.ready_at) / 2)
        return s.hold_until - lead if lead > timedelta(0) else None

    async def on_deadline(self, accept_by: datetime) -> None:
        s = self.s
        if s.status != FS.ready_for_pickup or s.hold_until is None:
            await super().on_deadline(accept_by)
            return
        now = workflow.now()
        if now >= s.hold_until:
            await self.expire()
        elif not self.reminded and (at := self.remind_at()) is not None and now >= at:
            self.reminded = True
            self.note("pickup_reminded", {"hold_until": s.hold_until.isoformat()})
            await self.record()
            await self.tell_customer("pickup_reminder", {"node_id": s.node_id, "hold_until": s.hold_until.isoformat()})

    async def expire(self) -> None:
        """A no-show: the units go back on the store's shelf, their lines are cancelled and their money voided."""
        await self.release_all("pickup expired")
        await self.change(FS.expired, f"not collected by {when(self.s.hold_until)}", cancelled=self.take_lines())
        await self.tell_customer("pickup_expired", {"node_id": self.s.node_id})

    async def tell_customer(self, event: str, detail: dict) -> None:
        await activities.notify(Notification(order_id=self.inp.order_id, event=event,
                                             key=f"{self.inp.fulfillment_id}:{event}", detail=detail))

    def waits(self) -> dict[FS, str]:
        s = self.s
        arrived = f" · customer outside since {when(s.arrived_at)}" + (f" (bay {s.bay})" if s.bay else "") \
            if s.arrived_at else ""
        return {**super().waits(), FS.accepted: f"{s.node_id} to pick" + arrived,
                FS.picked: f"{s.node_id} to make it ready" + arrived,
                FS.ready_for_pickup: f"the customer to collect it, held until {when(s.hold_until)}" + arrived}
