"""FROZEN: the fulfillment workflow as it ran until 2026-12-02 (workflow type "FulfillmentWorkflow"), the
child of the frozen OrderWorkflow (order_v1). Nothing here may change; see order_v1 for when it goes.

FulfillmentWorkflow: one node's part of an order, from release to delivery.

released ─accept→ accepted ─pick→ picked ─pack→ packed ─ship→ shipped ─deliver→ delivered
   │  └reject→ rejected (stock released, the order reroutes)
   └─ no accept within the accept timeout → timed_out (the order reroutes)
Until shipped, the order may cancel some or all units (``cancel_lines`` signal).

Milestones are Updates (so the partner learns at once if one is out of order); the handlers only
queue them, and ``run`` performs them in order, so every activity call happens in one place.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        CancelLines, ConsumeRequest, FulfillmentEvent, FulfillmentInput, FulfillmentSnapshot, FulfillmentState,
        Label, LineQty, MilestoneResult, PaymentRecord, PaymentRequest, PickIn, RejectIn, ReservationTarget,
        ShipIn, ShipmentRequest, TimelineEntry,
    )
    from models.status import (
        FULFILLMENT_PATH, FULFILLMENT_TERMINAL, FULFILLMENT_UNSHIPPED, MILESTONE_TARGET, FulfillmentStatus as FS,
    )
    from workflows.legacy.common_v1 import call, conflict, invalid, mirror

_RANK = {s: i for i, s in enumerate(FULFILLMENT_PATH)}


@workflow.defn(name="FulfillmentWorkflow")
class FulfillmentWorkflowV1:
    @workflow.init
    def __init__(self, inp: FulfillmentInput) -> None:
        self.inp = inp
        self.state = FulfillmentState(
            fulfillment_id=inp.fulfillment_id, node_id=inp.node_id, status=FS.released,
            lines=list(inp.lines), ship_by=inp.ship_by, requested_units=sum(l.qty for l in inp.lines),
        )
        self.queue: list[tuple[int, str, Any]] = []
        self.results: dict[int, Any] = {}
        self.ticket = 0
        self.cancels: list[CancelLines] = []
        self.version = 0
        self.seq = 0
        self.timeline: list[TimelineEntry] = []
        self.missed: set[str] = set()  # promise milestones already flagged

    # ------------------------------------------------------------------ lifecycle
    @workflow.run
    async def run(self, inp: FulfillmentInput) -> FulfillmentState:
        # This fulfillment now owns the stock reserved for it.
        await call("inventory.commit", ConsumeRequest(
            order_id=inp.order_id, fulfillment_id=inp.fulfillment_id, node_id=inp.node_id, lines=inp.lines), int)
        self.state.released_at = workflow.now()
        self._event("fulfillment_released", {"node_id": inp.node_id, "lines": self._lines_detail()})
        await self._record()
        deadline = workflow.now() + inp.accept_timeout
        while self.state.status not in (FS.delivered, FS.rejected, FS.timed_out, FS.cancelled):
            waits = [(deadline - workflow.now()).total_seconds()] if self.state.status == FS.released else []
            milestone = self._next_milestone()
            if milestone is not None:
                waits.append((milestone[0] - workflow.now()).total_seconds())
            try:
                await workflow.wait_condition(lambda: bool(self.queue or self.cancels),
                                              timeout=max(min(waits), 0.001) if waits else None)
            except asyncio.TimeoutError:
                if self.state.status == FS.released and workflow.now() >= deadline:
                    await self._release_all("accept_timeout")
                    await self._change(FS.timed_out, f"not accepted within {inp.accept_timeout}",
                                       unsourced=self._take_lines())
                    break
                await self._check_milestones()
                continue
            if self.cancels:
                await self._cancel(self.cancels.pop(0))
                continue
            ticket, kind, payload = self.queue.pop(0)
            self.results[ticket] = await self._perform(kind, payload)
        # Whatever is still queued can no longer happen.
        for ticket, _, _ in self.queue:
            self.results[ticket] = f"fulfillment is {self.state.status.value}"
        self.queue.clear()
        for c in self.cancels:
            await self._signal_parent(self.state.status, cancelled=[], request_id=c.request_id)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    def _next_milestone(self) -> Optional[tuple[datetime, str]]:
        """The next promise milestone still to be met: shipping by the ship-by cutoff, then delivery by the
        promised date; each is flagged once when missed."""
        s, inp = self.state, self.inp
        if inp.ship_by and s.status in FULFILLMENT_UNSHIPPED and "ship_by" not in self.missed:
            return inp.ship_by, "ship_by"
        if inp.promised_by and s.status != FS.delivered and "promised_by" not in self.missed:
            return inp.promised_by, "promised_by"
        return None

    async def _check_milestones(self) -> None:
        milestone = self._next_milestone()
        if milestone is None or workflow.now() < milestone[0]:
            return
        at, kind = milestone
        self.missed.add(kind)
        s = self.state
        s.at_risk = (f"not shipped by its ship-by {at.isoformat()}" if kind == "ship_by"
                     else f"not delivered by its promised date {at.isoformat()}")
        self._event("fulfillment_at_risk", {"node_id": s.node_id, "milestone": kind, "due": at.isoformat(),
                                            "status": s.status.value})
        await self._record()
        await self._signal_parent(s.status)

    async def _perform(self, kind: str, payload: Any) -> Any:
        s = self.state
        if kind == "accept":
            s.accepted_at = workflow.now()
            await self._change(FS.accepted)
        elif kind == "reject":
            await self._release_all("rejected")
            await self._change(FS.rejected, payload.reason, unsourced=self._take_lines())
        elif kind == "pick":
            picked = {l.line_id: l.qty for l in payload.lines}
            kept, short, targets = [], [], []
            for l in s.lines:
                got = min(picked.get(l.line_id, l.qty), l.qty)
                if got < l.qty:
                    short.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - got))
                    targets.append(self._target(l, got, "short_pick", not_found=l.qty - got))
                if got:
                    kept.append(LineQty(line_id=l.line_id, sku=l.sku, qty=got))
            if targets:
                await call("inventory.release", targets, int)
            s.lines = kept
            s.short_units += sum(l.qty for l in short)
            if not kept:
                await self._change(FS.rejected, "nothing found at pick", unsourced=short)
            else:
                await self._change(FS.picked, "short pick" if short else None, unsourced=short)
        elif kind == "pack":
            await self._change(FS.packed)
        elif kind == "ship":
            await self._ship(payload)
        elif kind == "deliver":
            await self._change(FS.delivered)
        return None

    async def _ship(self, req: ShipIn) -> None:
        s, inp = self.state, self.inp
        label = await call("carriers.label", ShipmentRequest(
            order_id=inp.order_id, fulfillment_id=inp.fulfillment_id, node_id=inp.node_id,
            postal_code=inp.postal_code, method=inp.method, units=sum(l.qty for l in s.lines),
            carrier=req.carrier or (None if req.tracking else inp.carrier), tracking=req.tracking,
        ), Label)
        await call("inventory.consume", ConsumeRequest(
            order_id=inp.order_id, fulfillment_id=inp.fulfillment_id, node_id=inp.node_id, lines=s.lines), int)
        amount = sum((inp.unit_prices[l.line_id] * l.qty for l in s.lines), Decimal("0"))
        payment = await call("payments.call", PaymentRequest(
            order_id=inp.order_id, idempotency_key=f"{inp.fulfillment_id}:capture", kind="capture",
            amount=amount, currency=inp.currency, fulfillment_id=inp.fulfillment_id, at=workflow.now(),
        ), PaymentRecord)
        s.carrier, s.tracking, s.shipped_at = label.carrier, label.tracking, workflow.now()
        await self._change(FS.shipped, payment=payment)

    async def _cancel(self, req: CancelLines) -> None:
        s = self.state
        if s.status not in FULFILLMENT_UNSHIPPED:
            await self._signal_parent(s.status, cancelled=[], request_id=req.request_id)
            return
        wanted = None if req.lines is None else {l.line_id: l.qty for l in req.lines}
        kept, dropped, targets = [], [], []
        for l in s.lines:
            drop = l.qty if wanted is None else min(wanted.get(l.line_id, 0), l.qty)
            if drop:
                dropped.append(LineQty(line_id=l.line_id, sku=l.sku, qty=drop))
                targets.append(self._target(l, l.qty - drop, "cancel"))
            if l.qty - drop:
                kept.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - drop))
        if targets:
            await call("inventory.release", targets, int)
        s.lines = kept
        status = s.status if kept else FS.cancelled
        self._event("fulfillment_cancel", {"cancelled": [d.model_dump() for d in dropped], "reason": req.reason,
                                           "move": req.move})
        await self._change(status, req.reason if not kept else s.reason, request_id=req.request_id,
                           **({"unsourced": dropped} if req.move else {"cancelled": dropped}))

    # ------------------------------------------------------------------ partner milestones (Updates)
    def _check(self, kind: str) -> bool:
        """True if the milestone is new, False if it repeats one already done; raise if out of order."""
        s = self.state
        queued = [k for _, k, _ in self.queue]
        if kind == "reject":
            if s.status == FS.rejected or "reject" in queued:
                return False
            if s.status in (FS.released, FS.accepted) and not set(queued) - {"accept"}:
                return True
            raise conflict(f"cannot reject a fulfillment that is {s.status.value}")
        if s.status not in _RANK or "reject" in queued:
            raise conflict(f"fulfillment is {s.status.value}: {kind} is not possible")
        target = MILESTONE_TARGET[kind]
        current = max([_RANK[s.status]] + [_RANK[MILESTONE_TARGET[k]] for k in queued])
        if _RANK[target] <= current:
            return False
        if _RANK[target] == current + 1:
            return True
        raise conflict(f"{kind} is out of order: fulfillment is {FULFILLMENT_PATH[current].value}")

    async def _milestone(self, kind: str, payload: Any = None) -> MilestoneResult:
        if not self._check(kind):
            return MilestoneResult(fulfillment_id=self.inp.fulfillment_id, status=self.state.status, changed=False)
        self.ticket += 1
        ticket = self.ticket
        self.queue.append((ticket, kind, payload))
        await workflow.wait_condition(lambda: ticket in self.results)
        error = self.results.pop(ticket)
        if error:
            raise conflict(error)
        return MilestoneResult(fulfillment_id=self.inp.fulfillment_id, status=self.state.status, changed=True)

    @workflow.update
    async def accept(self) -> MilestoneResult:
        return await self._milestone("accept")

    @accept.validator
    def _v_accept(self) -> None:
        self._check("accept")

    @workflow.update
    async def reject(self, body: RejectIn) -> MilestoneResult:
        return await self._milestone("reject", body)

    @reject.validator
    def _v_reject(self, body: RejectIn) -> None:
        self._check("reject")

    @workflow.update
    async def pick(self, body: PickIn) -> MilestoneResult:
        return await self._milestone("pick", body)

    @pick.validator
    def _v_pick(self, body: PickIn) -> None:
        if self._check("pick"):
            assigned = {l.line_id: l.qty for l in self.state.lines}
            for l in body.lines:
                if l.line_id not in assigned:
                    raise invalid(f"line {l.line_id} is not part of this fulfillment")
                if l.qty > assigned[l.line_id]:
                    raise invalid(f"line {l.line_id}: picked {l.qty} but only {assigned[l.line_id]} were released")

    @workflow.update
    async def pack(self) -> MilestoneResult:
        return await self._milestone("pack")

    @pack.validator
    def _v_pack(self) -> None:
        self._check("pack")

    @workflow.update
    async def ship(self, body: ShipIn) -> MilestoneResult:
        return await self._milestone("ship", body)

    @ship.validator
    def _v_ship(self, body: ShipIn) -> None:
        self._check("ship")

    @workflow.update
    async def deliver(self) -> MilestoneResult:
        return await self._milestone("deliver")

    @deliver.validator
    def _v_deliver(self) -> None:
        self._check("deliver")

    @workflow.signal
    def cancel_lines(self, req: CancelLines) -> None:
        self.cancels.append(req)

    @workflow.query
    def state(self) -> FulfillmentState:
        return self.state

    # ------------------------------------------------------------------ helpers
    def _target(self, l: LineQty, qty: int, reason: str, not_found: int = 0) -> ReservationTarget:
        return ReservationTarget(order_id=self.inp.order_id, fulfillment_id=self.inp.fulfillment_id,
                                 line_id=l.line_id, node_id=self.inp.node_id, sku=l.sku, qty=qty,
                                 reason=reason, not_found=not_found)

    async def _release_all(self, reason: str) -> None:
        await call("inventory.release", [self._target(l, 0, reason) for l in self.state.lines], int)

    def _take_lines(self) -> list[LineQty]:
        lines, self.state.lines = self.state.lines, []
        return lines

    def _lines_detail(self) -> list[dict[str, Any]]:
        return [l.model_dump() for l in self.state.lines]

    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.seq += 1
        self.timeline.append(TimelineEntry(
            key=f"{self.inp.fulfillment_id}:{self.seq}", at=workflow.now(), event=event,
            detail={"fulfillment_id": self.inp.fulfillment_id, **detail},
        ))

    async def _change(
        self, status: FS, reason: Optional[str] = None, unsourced: Optional[list[LineQty]] = None,
        cancelled: Optional[list[LineQty]] = None, payment: Optional[PaymentRecord] = None,
        request_id: Optional[str] = None,
    ) -> None:
        s = self.state
        changed = status != s.status
        s.status = status
        s.reason = reason
        if status == FS.delivered:
            s.delivered_at = workflow.now()
        if status in FULFILLMENT_TERMINAL or (status == FS.shipped and "promised_by" not in self.missed):
            s.at_risk = None  # over (delivered, or failed and rerouted), or shipped: only delivery is watched now
        if changed:
            detail: dict[str, Any] = {"node_id": s.node_id, "status": status.value}
            if reason:
                detail["reason"] = reason
            if unsourced:
                detail["unsourced"] = [u.model_dump() for u in unsourced]
            if status == FS.shipped:
                detail.update(carrier=s.carrier, tracking=s.tracking)
            self._event(f"fulfillment_{status.value}", detail)
        await self._record()
        await self._signal_parent(status, unsourced or [], cancelled or [], payment, request_id)

    async def _signal_parent(
        self, status: FS, unsourced: Optional[list[LineQty]] = None, cancelled: Optional[list[LineQty]] = None,
        payment: Optional[PaymentRecord] = None, request_id: Optional[str] = None,
    ) -> None:
        s = self.state
        self.version += 1
        await workflow.get_external_workflow_handle(self.inp.parent_workflow_id).signal(
            "fulfillment_event",
            FulfillmentEvent(
                fulfillment_id=s.fulfillment_id, node_id=s.node_id, status=status, lines=list(s.lines),
                unsourced=unsourced or [], cancelled=cancelled or [], carrier=s.carrier, tracking=s.tracking,
                reason=s.reason, payment=payment, at=workflow.now(), seq=self.version, request_id=request_id,
                at_risk=s.at_risk,
            ),
        )

    async def _record(self) -> None:
        self.version += 1
        timeline, self.timeline = self.timeline, []
        await mirror("read_model.record_fulfillment", FulfillmentSnapshot(
            order_id=self.inp.order_id, fulfillment=self.state, timeline=timeline, version=self.version))
