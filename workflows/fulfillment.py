"""The fulfillment workflow (type "Fulfillment"): one node's part of an order, from release to delivery.

released ─accept→ accepted ─pick→ picked ─pack→ packed ─ship→ shipped ─deliver→ delivered
   │  └reject→ rejected (stock released, the order reroutes)
   └─ no accept within the accept timeout → timed_out (the order reroutes)
Until shipped the order may cancel some or all units, or move them elsewhere while the node has not picked.

Milestones are Updates: the validator tells the partner at once if one is out of order (it counts milestones
already admitted, so a partner may send accept and pick back to back), and the handlers take turns under one
lock with the run loop (the acceptance deadline, the promise milestones, the order's cancellations). The order
hears only what it acts on: units handed back, the shipment and its capture, the delivery, a missed promise
milestone, and answers to its requests.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable, Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        CancelLines, ConsumeRequest, ExceptionIn, FulfillmentEvent, FulfillmentInput, FulfillmentSnapshot, FulfillmentState,
        Label, LineQty, MilestoneResult, PaymentRecord, PaymentRequest, PickIn, RejectIn, ReservationTarget, ShipIn,
        ShipmentRequest, TimelineEntry,
    )
    from models.status import (
        FULFILLMENT_DELIVERED, FULFILLMENT_PATHS, FULFILLMENT_TERMINAL, FULFILLMENT_UNSHIPPED, MILESTONES,
        FulfillmentKind, FulfillmentStatus as FS,
    )
    import workflows.activities as activities
    from workflows.common import check_within, conflict, when

MOVABLE = (FS.released, FS.accepted)  # a node that has picked keeps the work (it can still be cancelled)


@workflow.defn(name="Fulfillment")
class FulfillmentWorkflow:
    """A delivery: the parcel path. The store flows (workflows/store/) are this workflow with their own path and
    milestones: the same deadlines, cancellations, bookkeeping and telling the order."""

    KIND = FulfillmentKind.delivery
    PATH = FULFILLMENT_PATHS[FulfillmentKind.delivery]
    TARGET = MILESTONES[FulfillmentKind.delivery]
    SHIPPED: Optional[FS] = FS.shipped  # meets the ship-by cutoff (None: this kind has none)
    DONE = FULFILLMENT_DELIVERED  # meets the promised date
    TELLS: frozenset[FS] = frozenset({FS.shipped})  # besides the end: what the order hears about

    @workflow.init
    def __init__(self, inp: FulfillmentInput) -> None:
        self.inp = inp
        self.s = FulfillmentState(
            fulfillment_id=inp.fulfillment_id, node_id=inp.node_id, status=inp.start_status or FS.released,
            lines=list(inp.lines), to_node_id=inp.to_node_id, pickup_id=inp.pickup_id,
            ship_by=inp.ship_by, promised_by=inp.promised_by, requested_units=sum(l.qty for l in inp.lines),
            kind=self.KIND, method=inp.method, wave=inp.wave)
        self.lock = asyncio.Lock()
        self.admitted: list[tuple[str, int]] = []  # milestones past their validator, until they are done
        self.tickets = 0
        self.requests: list[CancelLines] = []
        self.missed: set[str] = set()  # promise milestones already flagged
        self.version = 0
        self.noted = 0
        self.told = 0
        self.lines_told = list(inp.lines)  # as the order knows them
        self.lines_recorded: Optional[list[LineQty]] = None  # as the read model has them
        self.timeline: list[TimelineEntry] = []

    # ================================================================== the fulfillment's life
    @workflow.run
    async def run(self, inp: FulfillmentInput) -> FulfillmentState:
        await self.take_over()
        await self.follow(workflow.now() + inp.accept_timeout)
        async with self.lock:
            while self.requests:  # what the order asked too late is answered with how it ended
                await self.tell_order(request_id=self.requests.pop(0).request_id)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.s

    async def take_over(self) -> None:
        """This node now owns the stock reserved for it."""
        inp = self.inp
        await activities.commit(ConsumeRequest(order_id=inp.order_id, fulfillment_id=inp.fulfillment_id,
                                               node_id=inp.node_id, lines=inp.lines))
        self.s.released_at = workflow.now()
        self.note("fulfillment_released", {"node_id": inp.node_id, "lines": [l.model_dump() for l in self.s.lines]})
        await self.record()

    async def follow(self, accept_by: datetime) -> None:
        """Until it ends: the acceptance deadline, the promise milestones, the order's requests."""
        while self.s.status not in FULFILLMENT_TERMINAL:
            due = self.next_deadline(accept_by)
            try:
                await workflow.wait_condition(
                    lambda: bool(self.requests) or self.s.status in FULFILLMENT_TERMINAL,
                    timeout=None if due is None else max((due[0] - workflow.now()).total_seconds(), 0.001),
                    timeout_summary=None if due is None else due[1])
            except asyncio.TimeoutError:
                async with self.lock:
                    await self.on_deadline(accept_by)
                continue
            async with self.lock:
                while self.requests and self.s.status not in FULFILLMENT_TERMINAL:
                    await self.drop(self.requests.pop(0))

    def next_deadline(self, accept_by: datetime) -> Optional[tuple[datetime, str]]:
        deadlines = []
        if self.s.status == FS.released:
            deadlines.append((accept_by, f"acceptance deadline at {self.inp.node_id}"))
        milestone = self.next_milestone()
        if milestone is not None:
            deadlines.append((milestone[0], f"{milestone[1].replace('_', '-')} of the promise"))
        return min(deadlines) if deadlines else None

    def next_milestone(self) -> Optional[tuple[datetime, str]]:
        """The next promise milestone still to meet: shipping by the ship-by cutoff, then delivery by the
        promised date; each is flagged once when missed."""
        s, inp = self.s, self.inp
        if inp.ship_by and self.SHIPPED and self.rank(s.status) < self.rank(self.SHIPPED) and "ship_by" not in self.missed:
            return inp.ship_by, "ship_by"
        if inp.promised_by and s.status not in self.DONE and "promised_by" not in self.missed:
            return inp.promised_by, "promised_by"
        return None

    async def check_promise(self) -> None:
        milestone = self.next_milestone()
        if milestone is None or workflow.now() < milestone[0]:
            return
        at, kind = milestone
        self.missed.add(kind)
        s = self.s
        s.at_risk = (f"not shipped by its ship-by {at.isoformat()}" if kind == "ship_by"
                     else f"not delivered by its promised date {at.isoformat()}")
        self.note("fulfillment_at_risk", {"node_id": s.node_id, "milestone": kind, "due": at.isoformat(),
                                          "status": s.status.value})
        await self.record()
        await self.tell_order()

    async def on_deadline(self, accept_by: datetime) -> None:
        if self.s.status == FS.released and workflow.now() >= accept_by:
            await self.time_out()
        else:
            await self.check_promise()

    async def time_out(self) -> None:
        await self.release_all("accept_timeout")
        await self.change(FS.timed_out, f"not accepted within {self.inp.accept_timeout}", unsourced=self.take_lines())

    # ================================================================== milestones (Updates)
    @workflow.update
    async def accept(self) -> MilestoneResult:
        return await self.milestone("accept", self.do_accept)

    @accept.validator
    def _v_accept(self) -> None:
        self.admissible("accept")

    @workflow.update
    async def reject(self, body: RejectIn) -> MilestoneResult:
        return await self.milestone("reject", self.do_reject, body)

    @reject.validator
    def _v_reject(self, body: RejectIn) -> None:
        self.admissible("reject")

    @workflow.update
    async def pick(self, body: PickIn) -> MilestoneResult:
        return await self.milestone("pick", self.do_pick, body)

    @pick.validator
    def _v_pick(self, body: PickIn) -> None:
        if self.admissible("pick"):
            check_within({l.line_id: l.qty for l in self.s.lines}, body.lines, "this fulfillment", "picked", "released")

    @workflow.update
    async def pack(self) -> MilestoneResult:
        return await self.milestone("pack", self.do_pack)

    @pack.validator
    def _v_pack(self) -> None:
        self.admissible("pack")

    @workflow.update
    async def ship(self, body: ShipIn) -> MilestoneResult:
        return await self.milestone("ship", self.do_ship, body)

    @ship.validator
    def _v_ship(self, body: ShipIn) -> None:
        self.admissible("ship")

    @workflow.update
    async def deliver(self) -> MilestoneResult:
        return await self.milestone("deliver", self.do_deliver)

    @deliver.validator
    def _v_deliver(self) -> None:
        self.admissible("deliver")

    @workflow.update(description='The carrier reported the shipped parcel lost, damaged, refused or returned to sender, '
                                 'e.g. {"reason": "lost"}: it ends here and the order reships or refunds its units')
    async def exception(self, body: ExceptionIn) -> MilestoneResult:
        return await self.milestone("exception", self.do_exception, body)

    @exception.validator
    def _v_exception(self, body: ExceptionIn) -> None:
        self.admissible("exception")

    @workflow.signal
    def cancel_lines(self, req: CancelLines) -> None:
        self.requests.append(req)

    @workflow.query
    def state(self) -> FulfillmentState:
        return self.s

    # ------------------------------------------------------------------ order of milestones
    def admissible(self, kind: str) -> bool:
        """The validator's rule: True if new, False if a repeat of one done or admitted; raises if out of order."""
        s, admitted = self.s, [k for k, _ in self.admitted]
        if kind == "exception":
            return self.carrier_exception_due()
        if kind == "reject":
            if s.status == FS.rejected or "reject" in admitted:
                return False
            if s.status in MOVABLE and not set(admitted) - {"accept"}:
                return True
            raise conflict(f"cannot reject a fulfillment that is {s.status.value}")
        self.known(kind)
        if s.status not in self.PATH or "reject" in admitted:
            raise conflict(f"fulfillment is {s.status.value}: {kind} is not possible")
        current = max([self.rank(s.status)] + [self.rank(self.TARGET[k]) for k in admitted if k in self.TARGET])
        return self.step(kind, current)

    def due(self, kind: str) -> bool:
        """The same rule on its turn, against what has happened (not what is admitted)."""
        s = self.s
        if kind == "exception":
            return self.carrier_exception_due()
        if kind == "reject":
            if s.status == FS.rejected:
                return False
            if s.status in MOVABLE:
                return True
            raise conflict(f"cannot reject a fulfillment that is {s.status.value}")
        if s.status not in self.PATH:
            raise conflict(f"fulfillment is {s.status.value}: {kind} is not possible")
        return self.step(kind, self.rank(s.status))

    def carrier_exception_due(self) -> bool:
        """Only a parcel on its way: True if it is, False for a repeat; anything else is a conflict."""
        if self.KIND != FulfillmentKind.delivery:
            raise conflict(f"a {self.KIND.value} has no parcel for a carrier to lose")
        if self.s.status == FS.exception:
            return False
        if self.s.status != FS.shipped:
            raise conflict(f"fulfillment is {self.s.status.value}: only a shipped parcel has a carrier exception")
        return True

    def known(self, kind: str) -> None:
        if kind not in self.TARGET:
            raise conflict(f"{kind} is not a milestone of a {self.KIND.value} fulfillment")

    def rank(self, status: FS) -> int:
        return self.PATH.index(status) if status in self.PATH else len(self.PATH)

    def step(self, kind: str, current: int) -> bool:
        target = self.rank(self.TARGET[kind])
        if target <= current:
            return False
        if target == current + 1:
            return True
        raise conflict(f"{kind} is out of order: fulfillment is {self.PATH[current].value}")

    async def milestone(self, kind: str, step: Callable[..., Awaitable[None]], *args: Any) -> MilestoneResult:
        if not self.admissible(kind):
            return self.result(changed=False)
        self.tickets += 1
        ticket = (kind, self.tickets)
        self.admitted.append(ticket)  # counted by the validators of what follows, until it is done
        try:
            async with self.lock:
                if not self.due(kind):
                    return self.result(changed=False)
                await step(*args)
        finally:
            self.admitted.remove(ticket)
        return self.result(changed=True)

    def result(self, changed: bool) -> MilestoneResult:
        return MilestoneResult(fulfillment_id=self.inp.fulfillment_id, status=self.s.status, changed=changed)

    # ------------------------------------------------------------------ what each milestone does
    async def do_accept(self) -> None:
        self.s.accepted_at = workflow.now()
        await self.change(FS.accepted)

    async def do_reject(self, body: RejectIn) -> None:
        await self.release_all("rejected")
        await self.change(FS.rejected, body.reason, unsourced=self.take_lines())

    async def do_pick(self, body: PickIn) -> None:
        s = self.s
        picked = {l.line_id: l.qty for l in body.lines}
        kept, short, targets = [], [], []
        for l in s.lines:
            got = min(picked.get(l.line_id, l.qty), l.qty)
            if got < l.qty:
                short.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - got))
                targets.append(self.target(l, got, "short_pick", not_found=l.qty - got))
            if got:
                kept.append(LineQty(line_id=l.line_id, sku=l.sku, qty=got))
        if targets:
            await activities.set_reservations(targets, "short pick")
        s.lines = kept
        s.short_units += sum(l.qty for l in short)
        s.picked_at = workflow.now()
        if not kept:
            await self.change(FS.rejected, "nothing found at pick", unsourced=short)
        else:
            await self.change(FS.picked, "short pick" if short else None, unsourced=short)

    async def do_pack(self) -> None:
        await self.change(FS.packed)

    async def do_ship(self, body: ShipIn) -> None:
        label = await self.dispatch(body)
        payment = None if self.paid_for() else await self.capture()
        self.shipped(label)
        await self.change(FS.shipped, payment=payment)

    async def dispatch(self, body: ShipIn) -> Label:
        """The parcel leaves: its label bought (or the partner's own tracking kept), the units out of stock."""
        s, inp = self.s, self.inp
        label = await activities.label(ShipmentRequest(
            order_id=inp.order_id, fulfillment_id=inp.fulfillment_id, node_id=inp.node_id,
            postal_code=inp.postal_code, method=inp.method, units=sum(l.qty for l in s.lines),
            carrier=body.carrier or (None if body.tracking else inp.carrier), tracking=body.tracking))
        await activities.consume(ConsumeRequest(order_id=inp.order_id, fulfillment_id=inp.fulfillment_id,
                                                node_id=inp.node_id, lines=s.lines))
        return label

    def shipped(self, label: Label) -> None:
        self.s.carrier, self.s.tracking, self.s.shipped_at = label.carrier, label.tracking, workflow.now()

    async def do_deliver(self) -> None:
        await self.change(FS.delivered)

    async def do_exception(self, body: ExceptionIn) -> None:
        # Its units go back to the order, which reships or refunds them (they left the stock when they shipped).
        await self.change(FS.exception, body.reason + (f": {body.detail}" if body.detail else ""),
                          unsourced=self.take_lines())

    def paid_for(self) -> bool:
        """A reshipment whose every unit was paid for with the parcel that was lost: nothing to capture."""
        return bool(self.inp.prepaid) and all(self.inp.prepaid.get(l.line_id, 0) >= l.qty for l in self.s.lines)

    async def capture(self) -> PaymentRecord:
        """Charge the customer for the units this fulfillment hands over (once: the gateway dedupes the key); a
        customer on account is invoiced for them instead."""
        s, inp = self.s, self.inp
        # A reshipment's units are paid for already (with the parcel that was lost).
        amount = sum((inp.unit_prices[l.line_id] * max(l.qty - inp.prepaid.get(l.line_id, 0), 0) for l in s.lines),
                     Decimal("0"))
        kind = "invoice" if inp.on_account else "capture"
        return await activities.payment(PaymentRequest(
            order_id=inp.order_id, idempotency_key=f"{inp.fulfillment_id}:{kind}", kind=kind, amount=amount,
            on_account=inp.on_account,
            currency=inp.currency, fulfillment_id=inp.fulfillment_id, at=workflow.now(),
            authorization=inp.authorization))

    async def drop(self, req: CancelLines) -> None:
        """The order's request: drop units (cancel them, or hand them back to be placed elsewhere: a move)."""
        s = self.s
        if s.status not in FULFILLMENT_UNSHIPPED or (req.move and s.status not in MOVABLE):
            await self.tell_order(request_id=req.request_id)  # too late: the answer says what it is
            return
        wanted = None if req.lines is None else {l.line_id: l.qty for l in req.lines}
        kept, dropped, targets = [], [], []
        for l in s.lines:
            n = l.qty if wanted is None else min(wanted.get(l.line_id, 0), l.qty)
            if n:
                dropped.append(LineQty(line_id=l.line_id, sku=l.sku, qty=n))
                targets.append(self.target(l, l.qty - n, "cancel"))
            if l.qty - n:
                kept.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - n))
        if targets:
            await activities.set_reservations(targets, "cancel")
        s.lines = kept
        self.note("fulfillment_cancel", {"cancelled": [d.model_dump() for d in dropped], "reason": req.reason,
                                         "move": req.move})
        await self.change(s.status if kept else FS.cancelled, req.reason if not kept else s.reason,
                          request_id=req.request_id, **({"unsourced": dropped} if req.move else {"cancelled": dropped}))

    # ------------------------------------------------------------------ bookkeeping
    def target(self, l: LineQty, qty: int, reason: str, not_found: int = 0) -> ReservationTarget:
        return ReservationTarget(order_id=self.inp.order_id, fulfillment_id=self.inp.fulfillment_id,
                                 line_id=l.line_id, node_id=self.inp.node_id, sku=l.sku, qty=qty, reason=reason,
                                 not_found=not_found)

    async def release_all(self, reason: str) -> None:
        await activities.set_reservations([self.target(l, 0, reason) for l in self.s.lines], reason)

    def take_lines(self) -> list[LineQty]:
        lines, self.s.lines = self.s.lines, []
        return lines

    def note(self, event: str, detail: dict[str, Any]) -> None:
        self.noted += 1
        self.timeline.append(TimelineEntry(
            key=f"{self.inp.fulfillment_id}:{self.noted}", at=workflow.now(),
            event=event, detail={"fulfillment_id": self.inp.fulfillment_id, **detail}))

    async def change(self, status: FS, reason: Optional[str] = None, unsourced: Optional[list[LineQty]] = None,
                     cancelled: Optional[list[LineQty]] = None, payment: Optional[PaymentRecord] = None,
                     request_id: Optional[str] = None) -> None:
        s = self.s
        changed = status != s.status
        s.status, s.reason = status, reason
        if status in FULFILLMENT_DELIVERED:
            s.delivered_at = workflow.now()
        if status in FULFILLMENT_TERMINAL or status in self.DONE or (
                status == self.SHIPPED and "promised_by" not in self.missed):
            s.at_risk = None  # over (delivered, or failed and rerouted), or shipped: only delivery is watched now
        if changed:
            detail: dict[str, Any] = {"node_id": s.node_id, "status": status.value}
            if reason:
                detail["reason"] = reason
            if unsourced:
                detail["unsourced"] = [u.model_dump() for u in unsourced]
            if s.tracking and status == self.SHIPPED:
                detail.update(carrier=s.carrier, tracking=s.tracking)
            self.note(f"fulfillment_{status.value}", detail)
        await self.record()
        if (status in FULFILLMENT_TERMINAL or (changed and status in self.TELLS) or unsourced or cancelled or payment
                or request_id):
            await self.tell_order(unsourced or [], cancelled or [], payment, request_id)

    async def tell_order(self, unsourced: Optional[list[LineQty]] = None, cancelled: Optional[list[LineQty]] = None,
                         payment: Optional[PaymentRecord] = None, request_id: Optional[str] = None) -> None:
        s = self.s
        self.told += 1
        # Its lines only when they changed since the order last heard (a thousand-line fulfillment's list in
        # every event would fill the order's history).
        lines = None if s.lines == self.lines_told else list(s.lines)
        self.lines_told = list(s.lines)
        await workflow.get_external_workflow_handle(self.inp.parent_workflow_id).signal(
            "fulfillment_event", FulfillmentEvent(
                fulfillment_id=s.fulfillment_id, node_id=s.node_id, status=s.status, lines=lines,
                unsourced=unsourced or [], cancelled=cancelled or [], carrier=s.carrier, tracking=s.tracking,
                reason=s.reason, payment=payment, at=workflow.now(), seq=self.told, request_id=request_id,
                at_risk=s.at_risk))

    async def record(self) -> None:
        workflow.set_current_details(self.details())  # its story in the Temporal UI
        self.version += 1
        timeline, self.timeline = self.timeline, []
        changed = self.s.lines != self.lines_recorded
        self.lines_recorded = list(self.s.lines)
        await activities.mirror_fulfillment(FulfillmentSnapshot(
            order_id=self.inp.order_id, timeline=timeline, version=self.version, lines_changed=changed,
            fulfillment=self.s if changed else self.s.model_copy(update={"lines": []})))

    def details(self) -> str:
        """What support reads on the workflow's page: status, node, what it waits for, the next deadline."""
        s, inp = self.s, self.inp
        out = [f"**{s.status.value.replace('_', ' ').capitalize()}** at {s.node_id} · "
               f"{sum(l.qty for l in s.lines)} unit(s) in {len(s.lines)} line(s) · order {inp.order_id}"]
        out.append("Waiting for: " + self.waits().get(s.status, f"nothing: {s.status.value}"
                                                   + (f" ({s.reason})" if s.reason else "")))
        if s.status not in FULFILLMENT_TERMINAL and s.released_at is not None and (
                due := self.next_deadline(s.released_at + inp.accept_timeout)):
            out.append(f"Next deadline: {due[1]} by {when(due[0])}")
        if s.at_risk:
            out.append(f"**At risk**: missed its {s.at_risk.replace('_', '-')}")
        return "\n".join(out)

    def waits(self) -> dict[FS, str]:
        s = self.s
        return {FS.released: f"{s.node_id} to accept (past the deadline the order moves it to another node)",
                FS.accepted: f"{s.node_id} to pick", FS.picked: f"{s.node_id} to pack",
                FS.packed: f"{s.node_id} to ship", FS.shipped: f"delivery ({s.carrier} {s.tracking})"}

