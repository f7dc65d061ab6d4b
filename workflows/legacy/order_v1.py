"""FROZEN: the order workflow as it ran until 2026-12-02 (workflow type "OrderWorkflow").

Orders placed before the rebuild keep running on this code until they close; new orders start as the
"Order" type (workflows/order/). Nothing here may change: every recorded history in tests/replay/ of type
OrderWorkflow must keep replaying. Delete this module (and fulfillment_v1, common_v1) once
`temporal workflow count --query 'WorkflowType="OrderWorkflow" AND ExecutionStatus="Running"'` is 0 and the
namespace's retention has passed.

OrderWorkflow: one per order, workflow id = order id.

capture → promise (plan) → reserve → authorize → remorse window (Updates modify / cancel)
→ release: one FulfillmentWorkflow child per node → follow the children (reroute on rejection or
timeout, re-source short picks, capture per shipment) → delivered → return window (Updates
request_return / receive_return → restock → refund) → settle and close.

State lives here; the read model and search attributes mirror it after every step. Handlers and
the main loop take turns under one lock, so activities never interleave on the same order.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        CancelIn, CancelLines, Delivery, FulfillmentAssignment, FulfillmentEvent, FulfillmentInput,
        FulfillmentState, Label, Line, LineQty, LineState, ModifyIn, Notification, OrderInput, OrderSnapshot,
        OrderState, PaymentRecord, PaymentRequest, PlacedOrder, Plan, PlanLine, PlanRequest, Policy,
        PromiseView, ReceiveIn, ReleaseClaims, ReorchestrateIn, ReserveRequest, ReserveResult, RestockRequest, ReturnIn,
        ReturnedUnits, ReturnLabelRequest, ReturnLineState, ReturnResult, ReturnState, ReservationTarget,
        SupplyClaimLine, TimelineEntry,
    )
    from models.status import (
        FULFILLMENT_FAILED, FULFILLMENT_TERMINAL, FULFILLMENT_UNSHIPPED, DeliveryMethod,
        FulfillmentStatus as FS, OrderStatus as OS, ReturnStatus,
    )
    from workflows.legacy.common_v1 import (
        AT_RISK, CHANNEL, CUSTOMER_ID, FULFILLMENT_NODES, ORDER_STATUS, PROMISED_BY, call, conflict, invalid, mirror,
    )
    from workflows.legacy.fulfillment_v1 import FulfillmentWorkflowV1 as FulfillmentWorkflow

# How often backordered units are tried again when nobody reorchestrates them.
BACKORDER_RETRY = timedelta(hours=1)
RESERVE_ATTEMPTS = 3
UNCAPPED_SOURCING = {"reorchestrate", "backorder_retry", "supply_changed", "b2b_change"}
SHIPPED = {FS.shipped, FS.delivered}
RELEASE_NOTICE = "release-notice"


@workflow.defn(name="OrderWorkflow")
class OrderWorkflowV1:
    @workflow.init
    def __init__(self, inp: OrderInput) -> None:
        self.inp = inp
        self.lines: dict[str, LineState] = {l.line_id: self._line_state(l) for l in inp.lines}
        self.policy = inp.policy
        self.phase = OS.received
        self.reason: Optional[str] = None
        self.planned: list[FulfillmentAssignment] = []  # reserved, not yet released (remorse window)
        self.plan_dates: dict[str, tuple[Optional[datetime], Optional[datetime]]] = {}  # fid → (ship_by, promised)
        self.plan_meta: dict[str, tuple[DeliveryMethod, Optional[str], Optional[str]]] = {}  # fid → (method, postal, carrier)
        self.hold_until: dict[str, datetime] = {}  # fid → preorder release day: not released to the node before
        self.claims: dict[str, list[SupplyClaimLine]] = {}  # line → incoming supply promised to its open units
        self.fulfillments: dict[str, FulfillmentState] = {}
        self.returns: dict[str, ReturnState] = {}
        self.payments: list[PaymentRecord] = []
        self.authorized = Decimal("0")
        self.auth_round = 0
        self.excluded: dict[str, set[str]] = {}
        self.events: list[FulfillmentEvent] = []
        self.cancel_replies: dict[str, int] = {}
        self.reroutes = 0
        self.f_seq = 0
        self.r_seq = 0
        self.c_seq = 0
        self.t_seq = 0
        self.version = 0
        self.timeline: list[TimelineEntry] = []
        self.promise_ready = False
        self.supply_changed = False
        self.settled = False
        self.returns_changed = False
        self.created_at: Optional[datetime] = None
        self.release_at: Optional[datetime] = None  # the remorse window's end, counted from placement
        self.digital_at: Optional[datetime] = None  # when the digital lines were delivered
        self.lock = asyncio.Lock()
        self.sa_last: tuple = ()
        self.requested_date = inp.requested_delivery_date  # a B2B order may move it after release

    # ================================================================== lifecycle
    @workflow.run
    async def run(self, inp: OrderInput) -> OrderState:
        self.created_at = workflow.now()
        self.release_at = self.created_at + inp.windows.remorse
        self._event("order_received", {"channel": inp.channel, "lines": len(inp.lines)})
        await self._publish()
        async with self.lock:
            if await self._capture_and_promise():
                await self._enter_remorse_window()
        if self.phase == OS.awaiting_release:
            left = (self.release_at - workflow.now()).total_seconds()
            if left > 0:
                try:
                    await workflow.wait_condition(lambda: self.phase != OS.awaiting_release, timeout=left)
                except asyncio.TimeoutError:
                    pass
            async with self.lock:
                if self.phase == OS.awaiting_release:
                    await self._release()
        if self.phase == OS.released:
            await self._follow_fulfillments()
        async with self.lock:
            await self._settle()
        await self._return_window()
        async with self.lock:
            if self.claims:
                await call("inventory.release_claims", ReleaseClaims(order_id=self.inp.order_id), int)
                self.claims = {}
            self._event("order_closed", {"status": self._status().value})
            await self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    async def _capture_and_promise(self) -> bool:
        try:
            await call("order.capture", self.inp, None)
        except ActivityError as e:
            await self._reject(str(e.cause.message if isinstance(e.cause, ApplicationError) else e))
            return False
        plan = await self._source(list(self.lines), self.policy, release_now=False)
        if plan is None or not plan.feasible:
            await self._reject(plan.reason if plan else "no node can serve this order")
            return False
        if not await self._authorize(self._order_total()):
            await self._release_planned("payment_declined")
            self.phase, self.reason = OS.cancelled, "payment declined"
            self._event("payment_declined", {})
            await self._notify("cancelled", "cancelled", {"reason": "payment declined"})
            await self._publish()
            return False
        return True

    async def _enter_remorse_window(self) -> None:
        self.phase = OS.awaiting_release
        assert self.release_at is not None
        self._event("awaiting_release", {"until": self.release_at.isoformat(),
                                         "promised_by": self._promised_by_iso()})
        await self._notify("confirmed", "confirmed", {"promised_by": self._promised_by_iso()})
        await self._publish()
        self.promise_ready = True

    async def _release(self) -> None:
        self.phase = OS.released
        started = await self._release_due()
        self._event("released", {"fulfillments": started,
                                 "held_until": {a.fulfillment_id: self.hold_until[a.fulfillment_id].isoformat()
                                                for a in self.planned}})
        await self._deliver_digital()
        # Patch "release-notice": the customer hears the remorse window is over and the order can no longer
        # be changed. Orders released before this code replay without the notice (README: Changing workflows).
        if workflow.patched(RELEASE_NOTICE):
            await self._notify("released", "released", {"fulfillments": len(started)})
        if self._open_total():
            await self._resource_open("backorder_retry")  # stock may have come in during the remorse window
        await self._publish()

    async def _deliver_digital(self) -> None:
        """Digital lines need no node: they are captured and delivered the moment the order is released."""
        due = {lid: l.qty - l.cancelled_qty for lid, l in self.lines.items() if l.digital and l.qty > l.cancelled_qty}
        if not due:
            return
        amount = sum((self.lines[lid].unit_price * q for lid, q in due.items()), Decimal("0"))
        payment = await call("payments.call", self._payment("capture", f"{self.inp.order_id}:digital:capture",
                                                           amount), PaymentRecord)
        self.payments.append(payment)
        self.digital_at = workflow.now()
        self._event("digital_delivered", {"lines": [{"line_id": k, "qty": v} for k, v in due.items()],
                                          "amount": str(amount)})
        await self._notify("delivered", "digital:delivered", {"lines": sorted(due)})

    async def _release_due(self) -> list[str]:
        """Start every planned fulfillment whose preorder release day has come; the rest stay reserved."""
        due = [a for a in self.planned if self._hold_left(a.fulfillment_id) <= 0]
        self.planned = [a for a in self.planned if a not in due]
        for a in due:
            await self._start_fulfillment(a)
        return [a.fulfillment_id for a in due]

    def _hold_left(self, fulfillment_id: str) -> float:
        until = self.hold_until.get(fulfillment_id)
        return 0.0 if until is None else (until - workflow.now()).total_seconds()

    async def _follow_fulfillments(self) -> None:
        while True:
            backordered = self._open_total() > 0 and not self._active()
            waits = [BACKORDER_RETRY.total_seconds()] if backordered else []
            waits += [max(self._hold_left(a.fulfillment_id), 0.001) for a in self.planned]
            try:
                await workflow.wait_condition(
                    lambda: bool(self.events) or self._done() or self.supply_changed,
                    timeout=min(waits) if waits else None,
                )
            except asyncio.TimeoutError:
                async with self.lock:
                    if self.planned and self.phase == OS.released:
                        started = await self._release_due()
                        if started:
                            self._event("preorder_released", {"fulfillments": started})
                            await self._publish()
                            continue
                    if self._open_total() > 0 and not self._active() and self.phase == OS.released:
                        await self._resource_open("backorder_retry")
                        await self._publish()
                continue
            if self.supply_changed:
                self.supply_changed = False
                async with self.lock:
                    if self._open_total() > 0 and self.phase == OS.released:
                        await self._resource_open("supply_changed")
                        await self._publish()
            async with self.lock:
                await self._process_events()
            if self._done():
                return

    async def _return_window(self) -> None:
        """Stay open for returns until the window after the last delivery ends and no return is open."""
        if self._return_deadline() is None:
            return  # nothing returnable was delivered
        while True:
            deadline = self._return_deadline()
            assert deadline is not None
            left = (deadline - workflow.now()).total_seconds()
            open_returns = any(r.status == ReturnStatus.requested for r in self.returns.values())
            if left <= 0 and not open_returns:
                return
            self.returns_changed = False
            try:
                await workflow.wait_condition(lambda: self.returns_changed,
                                              timeout=left if left > 0 else None)
            except asyncio.TimeoutError:
                pass

    async def _settle(self) -> None:
        """Void what was authorized and never captured, once the order can capture no more."""
        if self.settled or self.authorized <= 0:
            return
        captured = sum((p.amount for p in self.payments if p.kind == "capture" and p.status == "succeeded"),
                       Decimal("0"))
        remainder = self.authorized - captured
        self.settled = True
        if remainder > 0:
            payment = await call("payments.call", self._payment("void", f"{self.inp.order_id}:void:{self.auth_round}",
                                                               remainder), PaymentRecord)
            self.payments.append(payment)
            self._event("payment_voided", {"amount": str(remainder)})
            await self._publish()

    # ================================================================== sourcing
    async def _source(
        self, line_ids: list[str], policy: Policy, release_now: bool, qty: Optional[dict[str, int]] = None,
        exclude: Optional[set[str]] = None, to_node: Optional[str] = None, reason: str = "initial",
    ) -> Optional[Plan]:
        """Plan and reserve the open units of these lines; new fulfillments are released at once if asked."""
        want = qty or {lid: self._open_qty(lid) for lid in line_ids}
        want = {k: v for k, v in want.items() if v > 0}
        if not want:
            return None
        plan: Optional[Plan] = None
        for _attempt in range(RESERVE_ATTEMPTS):
            plan = await self._plan(want, policy, exclude or set(), to_node)
            self._event("routing_decision", {
                "reason": reason, "feasible": plan.feasible, "why": plan.reason, "rules_version": plan.rules_version,
                "exact": plan.exact, "lower_bound": str(plan.lower_bound), "search_cost": str(plan.search_cost),
                "future_cost": str(plan.future_cost),
                "total_cost": str(plan.total_cost),
                "allocations": [{"node_id": a.node_id, "lines": [l.model_dump() for l in a.lines],
                                 "cost": str(a.cost)} for a in plan.allocations],
                "candidates": [c.model_dump(mode="json") for c in plan.candidates],
                "unfilled": [u.model_dump() for u in plan.unfilled],
            })
            for line_id, date in plan.backorder_dates.items():
                self._repromise(line_id, date)
            if not plan.feasible:
                return plan
            assignments = []
            for a in plan.allocations:
                self.f_seq += 1
                fid = f"{self.inp.order_id}-F{self.f_seq}"
                assignments.append(FulfillmentAssignment(fulfillment_id=fid, node_id=a.node_id, lines=a.lines))
                self.plan_dates[fid] = (a.ship_by, a.promised_by)
                self.plan_meta[fid] = (a.method, a.postal_code, a.carrier)
                if a.hold_until is not None:
                    self.hold_until[fid] = a.hold_until
            # These lines' earlier claims on incoming supply are replaced by the plan's (none once sourced).
            claim_lines = sorted((set(want) & set(self.claims)) | {c.line_id for c in plan.supply_claims})
            result = await call("inventory.reserve", ReserveRequest(
                order_id=self.inp.order_id, fulfillments=assignments, at=workflow.now(), channel=self.inp.channel,
                customer_tier=self.inp.customer.tier, hold_id=self.inp.hold_id, claim_lines=claim_lines,
                supply_claims=plan.supply_claims),
                ReserveResult)
            if not result.ok:
                # Someone took the stock between plan and reserve: plan again on fresh availability.
                self._event("reservation_conflict", {"nodes": result.short_nodes})
                continue
            for lid in claim_lines:
                self.claims.pop(lid, None)
            for d in plan.digital:
                line = self.lines[d.line_id]
                line.digital, line.promised_by = True, self.release_at
            for c in plan.supply_claims:
                self.claims.setdefault(c.line_id, []).append(c)
            if plan.supply_claims:
                self._event("supply_claimed", {"claims": [c.model_dump() for c in plan.supply_claims]})
            for a in assignments:
                for l in a.lines:
                    pb = self.plan_dates[a.fulfillment_id][1]
                    line = self.lines[l.line_id]
                    if pb and (line.promised_by is None or pb > line.promised_by):
                        line.promised_by = pb
                if release_now and self._hold_left(a.fulfillment_id) <= 0:
                    await self._start_fulfillment(a)
                else:
                    self.planned.append(a)
            return plan
        return Plan(feasible=False, reason="stock kept changing while reserving") if plan is None else plan

    async def _plan(self, want: dict[str, int], policy: Policy, exclude: set[str], to_node: Optional[str]) -> Plan:
        # A line already promised is due by its promise: nodes that would deliver later cost more.
        lines = [
            PlanLine(line_id=lid, sku=self.lines[lid].sku, qty=q, delivery=self.lines[lid].delivery,
                     exclude_nodes=sorted(self.excluded.get(lid, set()) | exclude),
                     due=self.lines[lid].promised_by.date() if self.lines[lid].promised_by else None)
            for lid, q in want.items()
        ]
        unreleased = self.phase in (OS.received, OS.awaiting_release)
        return await call("routing.plan", PlanRequest(
            order_id=self.inp.order_id, channel=self.inp.channel, customer_tier=self.inp.customer.tier,
            lines=lines, policy=policy, to_node=to_node, at=workflow.now(), hold_id=self.inp.hold_id,
            release_at=self.release_at if unreleased else None,
            requested_delivery_date=self.requested_date), Plan)

    async def _resource_open(self, reason: str, exclude: Optional[set[str]] = None, to_node: Optional[str] = None,
                             promised_before: Optional[dict[str, Optional[datetime]]] = None) -> Optional[Plan]:
        """Source every unit no live fulfillment holds (after rejection, timeout, short pick); a date that moves
        is told against ``promised_before`` when the caller changed the promises first."""
        open_lines = [lid for lid in self.lines if self._open_qty(lid) > 0]
        if not open_lines:
            return None
        # Ping-pong between failing nodes is capped; support's requests and waiting for stock are not.
        capped = reason not in UNCAPPED_SOURCING
        if capped:
            self.reroutes += 1
        if capped and self.reroutes > self.inp.windows.max_reroutes:
            self._event("backordered", {"reason": "reroute limit reached: waiting for support",
                                        "lines": open_lines})
            return None
        # A reroute may split what one node could not do; the order's all-or-nothing rules applied at placement.
        policy = Policy(ship_complete=False, max_splits=max(self.policy.max_splits, 2))
        before = {lid: (promised_before or {}).get(lid, self.lines[lid].promised_by) for lid in open_lines}
        plan = await self._source(open_lines, policy, release_now=True, exclude=exclude, to_node=to_node,
                                  reason=reason)
        if plan is not None and (not plan.feasible or plan.unfilled):
            self._event("backordered", {"lines": [{"line_id": lid, "qty": self._open_qty(lid)}
                                                  for lid in self.lines if self._open_qty(lid) > 0],
                                        "why": plan.reason or "not enough stock in eligible nodes",
                                        "expected": {k: v.isoformat() for k, v in plan.backorder_dates.items()}})
        # Record every date that moved; tell the customer once per date that moved later, or once that a line
        # waits with no date yet.
        for lid, old in before.items():
            new = self.lines[lid].promised_by
            if old and new and new != old and not (plan and plan.backorder_dates.get(lid)):
                self._event("repromised", {"line_id": lid, "reason": reason, "old": old.isoformat(),
                                           "new": new.isoformat()})
            if self._open_qty(lid) and not (plan and plan.backorder_dates.get(lid)):
                key = f"delayed:{lid}:undated"
            elif new and (old is None or new > old):
                key = f"delayed:{lid}:{new.isoformat()}"
            else:
                continue
            await self._notify("delayed", key, {"line_id": lid, "promised_by": new.isoformat() if new else None})
        return plan

    def _repromise(self, line_id: str, backorder_date: datetime) -> None:
        """A line waiting on supply is promised for when its last units can arrive."""
        line = self.lines[line_id]
        held = [f.promised_by for f in self.fulfillments.values() if f.status not in FULFILLMENT_FAILED
                and f.promised_by and any(l.line_id == line_id for l in f.lines)]
        held += [self.plan_dates[a.fulfillment_id][1] for a in self.planned
                 if self.plan_dates[a.fulfillment_id][1] and any(l.line_id == line_id for l in a.lines)]
        new = max(held + [backorder_date])
        if new != line.promised_by:
            self._event("repromised", {"line_id": line_id, "reason": "incoming supply",
                                       "old": line.promised_by.isoformat() if line.promised_by else None,
                                       "new": new.isoformat()})
            line.promised_by = new

    async def _start_fulfillment(self, a: FulfillmentAssignment) -> None:
        ship_by, promised = self.plan_dates.get(a.fulfillment_id, (None, None))
        method, postal, carrier = self.plan_meta[a.fulfillment_id]
        self.fulfillments[a.fulfillment_id] = FulfillmentState(
            fulfillment_id=a.fulfillment_id, node_id=a.node_id, status=FS.released, lines=list(a.lines),
            ship_by=ship_by, promised_by=promised,
        )
        await workflow.start_child_workflow(
            FulfillmentWorkflow.run,
            FulfillmentInput(
                fulfillment_id=a.fulfillment_id, order_id=self.inp.order_id,
                parent_workflow_id=workflow.info().workflow_id, node_id=a.node_id, lines=a.lines,
                unit_prices={l.line_id: self.lines[l.line_id].unit_price for l in a.lines},
                currency=self.inp.currency, method=method, postal_code=postal,
                accept_timeout=self.inp.windows.accept_timeout, ship_by=ship_by, carrier=carrier,
                promised_by=promised,
            ),
            id=a.fulfillment_id,
            # A fulfillment finishes its own last steps even when the order closes first.
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )

    async def _release_planned(self, reason: str, only: Optional[dict[str, int]] = None) -> None:
        """Give back reservations of planned (unreleased) fulfillments; ``only`` caps units per line."""
        targets, keep = [], []
        budget = dict(only) if only is not None else None
        for a in self.planned:
            new_lines = []
            for l in a.lines:
                drop = l.qty if budget is None else min(budget.get(l.line_id, 0), l.qty)
                if budget is not None and drop:
                    budget[l.line_id] -= drop
                if drop:
                    targets.append(ReservationTarget(
                        order_id=self.inp.order_id, fulfillment_id=a.fulfillment_id, line_id=l.line_id,
                        node_id=a.node_id, sku=l.sku, qty=l.qty - drop, reason=reason))
                if l.qty - drop:
                    new_lines.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - drop))
            if new_lines:
                keep.append(FulfillmentAssignment(fulfillment_id=a.fulfillment_id, node_id=a.node_id, lines=new_lines))
        if targets:
            await call("inventory.release", targets, int)
        self.planned = keep

    # ================================================================== events from fulfillments
    @workflow.signal
    def fulfillment_event(self, ev: FulfillmentEvent) -> None:
        self.events.append(ev)

    @workflow.signal(name="supply_changed")
    def supply_changed_signal(self) -> None:
        """Stock or incoming supply of one of this order's SKUs changed: try the backorder again now."""
        self.supply_changed = True

    async def _process_events(self) -> None:
        while self.events:
            ev = self.events.pop(0)
            f = self.fulfillments.get(ev.fulfillment_id)
            if f is None or ev.seq <= f.last_seq:
                continue  # unknown or already applied
            f.last_seq = ev.seq
            before = f.status
            f.status, f.lines, f.reason = ev.status, ev.lines, ev.reason
            f.carrier, f.tracking = ev.carrier, ev.tracking
            if ev.at_risk and ev.at_risk != f.at_risk:
                self._event("at_risk", {"fulfillment_id": f.fulfillment_id, "node_id": f.node_id,
                                        "why": ev.at_risk, "promised_by": self._promised_by_iso()})
                await self._notify("at_risk", f"{f.fulfillment_id}:at_risk:{ev.at_risk}",
                                   {"promised_by": self._promised_by_iso()})
            f.at_risk = ev.at_risk
            if ev.status == FS.shipped and before != FS.shipped:
                f.shipped_at = ev.at
            if ev.status == FS.delivered and before != FS.delivered:
                f.delivered_at = ev.at
            if ev.payment is not None and all(p.payment_id != ev.payment.payment_id for p in self.payments):
                self.payments.append(ev.payment)
            for c in ev.cancelled:
                self.lines[c.line_id].cancelled_qty += c.qty
            if ev.request_id is not None:
                self.cancel_replies[ev.request_id] = self.cancel_replies.get(ev.request_id, 0) + 1
            if ev.status in (FS.rejected, FS.timed_out) or ev.unsourced:
                for u in ev.unsourced:
                    self.excluded.setdefault(u.line_id, set()).add(ev.node_id)
            self._refresh_lines()
            if before != ev.status:
                if ev.status == FS.shipped:
                    await self._notify("shipped", f"{f.fulfillment_id}:shipped",
                                       {"carrier": f.carrier, "tracking": f.tracking})
                elif ev.status == FS.delivered:
                    await self._notify("delivered", f"{f.fulfillment_id}:delivered", {})
            # Units handed back on the order's own request (a move) are placed by that request.
            if ev.unsourced and ev.request_id is None and self.phase == OS.released:
                await self._resource_open(f"{ev.status.value} at {ev.node_id}")
            await self._publish()

    # ================================================================== Updates and queries
    @workflow.update
    async def await_promise(self) -> PlacedOrder:
        """Returns once the order is promised (or refused): what POST /orders answers."""
        await workflow.wait_condition(lambda: self.promise_ready or self.phase in (OS.rejected, OS.cancelled))
        return self._placed()

    @workflow.update
    async def modify(self, body: ModifyIn) -> PlacedOrder:
        async with self.lock:
            if self.phase == OS.released:
                await self._change_released(body)
                return self._placed()
            self._check_modifiable()
            if body.requested_delivery_date is not None:
                self.requested_date = body.requested_delivery_date
            old_lines = dict(self.lines)
            old_policy = self.policy
            new_lines = self._apply_modification(body)
            await self._release_planned("modified")
            self.lines, self.policy = new_lines, body.policy or self.policy
            self._forget_sourcing()
            plan = await self._source(list(self.lines), self.policy, release_now=False, reason="modified")
            if plan is None or not plan.feasible:
                # Put the order back as it was; the caller hears why.
                self.lines, self.policy = old_lines, old_policy
                self._forget_sourcing()
                await self._source(list(self.lines), self.policy, release_now=False, reason="modification_reverted")
                await self._publish()
                raise conflict(f"modification cannot be fulfilled: {plan.reason if plan else 'nothing to source'}")
            total = self._order_total()
            if total > self.authorized:
                await self._reauthorize(total)
            await self._trim_claims()  # lines the modification removed
            self._event("modified", {"lines": len(self.lines), "promised_by": self._promised_by_iso()})
            await self._publish()
            return self._placed()

    @modify.validator
    def _v_modify(self, body: ModifyIn) -> None:
        if self.phase == OS.released:
            self._check_released_change(body)
            return
        self._check_modifiable()
        if body.lines is None and body.address is None and body.policy is None and body.requested_delivery_date is None:
            raise invalid("nothing to modify: give lines, address, policy or requested_delivery_date")
        if body.lines is not None:
            ids = [l.line_id for l in body.lines if l.line_id]
            if len(ids) != len(set(ids)):
                raise invalid("line ids must be unique")

    @workflow.update
    async def cancel(self, body: CancelIn) -> OrderState:
        async with self.lock:
            want = self._check_cancellable(body)
            if self.phase == OS.awaiting_release:
                await self._release_planned("cancelled", want)
                for lid, q in want.items():
                    self.lines[lid].cancelled_qty += q
                await self._trim_claims()
            else:
                await self._cancel_released(dict(want), body.reason)
            everything = all(l.cancelled_qty >= l.qty for l in self.lines.values())
            self._event("cancelled" if everything else "lines_cancelled",
                        {"reason": body.reason, "lines": [{"line_id": k, "qty": v} for k, v in want.items()]})
            if everything:
                self.phase, self.reason = OS.cancelled, body.reason
                await self._settle()
                await self._notify("cancelled", "cancelled", {"reason": body.reason})
            self._refresh_lines()
            await self._publish()
            return self._state()

    @cancel.validator
    def _v_cancel(self, body: CancelIn) -> None:
        self._check_cancellable(body)

    @workflow.update
    async def reorchestrate(self, body: ReorchestrateIn) -> OrderState:
        async with self.lock:
            self._check_reorchestrate(body)
            exclude = set(body.exclude_nodes)
            target = self.fulfillments.get(body.fulfillment_id) if body.fulfillment_id else None
            if target is not None and target.status in FULFILLMENT_UNSHIPPED:
                # Dry-run first, so a hopeless request changes nothing.
                want = {l.line_id: l.qty for l in target.lines}
                probe = await self._plan(want, Policy(max_splits=self.policy.max_splits),
                                         exclude | {target.node_id}, body.to_node)
                if not probe.feasible or probe.unfilled:
                    raise conflict(f"cannot re-source {target.fulfillment_id}: "
                                   f"{probe.reason or 'not enough stock at eligible nodes'}")
                await self._cancel_fulfillments({target.fulfillment_id: None}, f"reorchestrated: {body.reason}",
                                                move=True)
                for l in want:
                    self.excluded.setdefault(l, set()).add(target.node_id)
            self._event("reorchestrate", {"reason": body.reason, "fulfillment_id": body.fulfillment_id,
                                          "exclude_nodes": sorted(exclude), "to_node": body.to_node})
            plan = await self._resource_open("reorchestrate", exclude=exclude, to_node=body.to_node)
            if plan is not None and not plan.feasible and body.to_node:
                await self._publish()
                raise conflict(f"cannot source at {body.to_node}: {plan.reason}")
            await self._publish()
            return self._state()

    @reorchestrate.validator
    def _v_reorchestrate(self, body: ReorchestrateIn) -> None:
        self._check_reorchestrate(body)

    @workflow.update
    async def request_return(self, body: ReturnIn) -> ReturnResult:
        async with self.lock:
            self._check_return(body)
            self.r_seq += 1
            rid = f"{self.inp.order_id}-R{self.r_seq}"
            node_id = body.node_id or self._delivering_node(body.lines[0].line_id)
            label = None
            if body.method == "ship_back":
                label = await call("carriers.return_label", ReturnLabelRequest(
                    order_id=self.inp.order_id, return_id=rid, node_id=node_id,
                    units=sum(l.qty for l in body.lines)), Label)
            self.returns[rid] = ReturnState(
                return_id=rid, status=ReturnStatus.requested, method=body.method, node_id=node_id,
                reason=body.reason, lines=[ReturnLineState(line_id=l.line_id, qty=l.qty) for l in body.lines],
                label=label,
            )
            self._event("return_requested", {"return_id": rid, "node_id": node_id, "reason": body.reason,
                                             "lines": [l.model_dump() for l in body.lines]})
            await self._publish()
            return ReturnResult(return_id=rid, status=ReturnStatus.requested, label=label)

    @request_return.validator
    def _v_request_return(self, body: ReturnIn) -> None:
        self._check_return(body)

    @workflow.update
    async def receive_return(self, return_id: str, body: ReceiveIn) -> ReturnResult:
        async with self.lock:
            if not self._check_receive(return_id, body):
                r = self.returns[return_id]
                return ReturnResult(return_id=return_id, status=r.status, label=r.label, refund_amount=r.refund_amount)
            r = self.returns[return_id]
            got = {l.line_id: l for l in body.lines}
            restock = []
            for rl in r.lines:
                g = got.get(rl.line_id)
                rl.received_qty = g.qty if g else 0
                rl.disposition = g.disposition if g else None
                if g and g.qty:
                    restock.append(ReturnedUnits(line_id=rl.line_id, sku=self.lines[rl.line_id].sku, qty=g.qty,
                                                 disposition=g.disposition))
            if restock:
                await call("inventory.restock", RestockRequest(
                    order_id=self.inp.order_id, return_id=return_id, node_id=r.node_id, lines=restock), int)
            r.status = ReturnStatus.received
            for rl in r.lines:
                self.lines[rl.line_id].returned_qty += rl.received_qty
            self._event("return_received", {"return_id": return_id,
                                            "lines": [rl.model_dump() for rl in r.lines]})
            refund = sum((self.lines[rl.line_id].unit_price * rl.received_qty for rl in r.lines), Decimal("0"))
            if refund > 0:
                payment = await call("payments.call", self._payment("refund", f"{return_id}:refund", refund,
                                                                    return_id=return_id), PaymentRecord)
                self.payments.append(payment)
            r.refund_amount = refund
            r.status = ReturnStatus.refunded
            self._event("refunded", {"return_id": return_id, "amount": str(refund)})
            await self._notify("refunded", f"{return_id}:refunded", {"amount": str(refund)})
            self._refresh_lines()
            self.returns_changed = True
            await self._publish()
            return ReturnResult(return_id=return_id, status=r.status, label=r.label, refund_amount=refund)

    @receive_return.validator
    def _v_receive_return(self, return_id: str, body: ReceiveIn) -> None:
        self._check_receive(return_id, body)

    @workflow.query
    def state(self) -> OrderState:
        return self._state()

    # ================================================================== rules behind the validators
    def _check_modifiable(self) -> None:
        if self.phase != OS.awaiting_release:
            raise conflict(f"order is {self._status().value}: it can only be modified in the remorse window")

    def _is_b2b(self) -> bool:
        return self.inp.requested_delivery_date is not None or self.inp.customer.tier == "b2b"

    def _check_released_change(self, body: ModifyIn) -> dict[str, int]:
        """A B2B order may change quantities and its date after release; the new quantity per line."""
        if not self._is_b2b() or self.settled:
            raise conflict(f"order is {self._status().value}: it can only be modified in the remorse window")
        if body.address is not None or body.policy is not None:
            raise conflict("after release a B2B order changes only line quantities and requested_delivery_date")
        if body.lines is None and body.requested_delivery_date is None:
            raise invalid("nothing to change: give lines or requested_delivery_date")
        qty: dict[str, int] = {}
        for m in body.lines or []:
            line = self.lines.get(m.line_id or "")
            if line is None or line.sku != m.sku:
                raise conflict("after release lines keep their line_id and sku; only qty changes")
            if m.line_id in qty:
                raise invalid(f"line {m.line_id} appears twice")
            shipped = self._shipped_qty(line.line_id)
            if m.qty < shipped:
                raise conflict(f"line {line.line_id}: {shipped} units have shipped already")
            qty[line.line_id] = m.qty + line.cancelled_qty
        return qty

    async def _change_released(self, body: ModifyIn) -> None:
        """Re-process a B2B order after release: fewer units are cancelled, more are sourced, a new date
        moves every unit not yet shipped; each changed line is promised again."""
        qty = self._check_released_change(body)
        before = {lid: l.promised_by for lid, l in self.lines.items()}
        fewer = {lid: self.lines[lid].qty - q for lid, q in qty.items() if q < self.lines[lid].qty}
        if fewer:
            await self._cancel_released(fewer, "b2b change")
        more = {lid: q - self.lines[lid].qty for lid, q in qty.items() if q > self.lines[lid].qty}
        for lid, n in more.items():
            self.lines[lid].qty += n
        if self._order_total() > self.authorized:
            await self._reauthorize(self._order_total())
        moved = body.requested_delivery_date is not None and body.requested_delivery_date != self.requested_date
        if moved:
            self.requested_date = body.requested_delivery_date
            await self._release_planned("b2b change")
            unshipped = {f.fulfillment_id: None for f in self.fulfillments.values() if f.status in FULFILLMENT_UNSHIPPED}
            if unshipped:
                excluded = {lid: set(nodes) for lid, nodes in self.excluded.items()}
                await self._cancel_fulfillments(unshipped, "b2b date change", move=True)
                self.excluded = excluded  # moved for the date, not failed: the same nodes may serve again
        for lid in set(more) | (set(self.lines) if moved else set()):
            held = [f.promised_by for f in self.fulfillments.values() if f.status not in FULFILLMENT_FAILED
                    and f.promised_by and any(l.line_id == lid for l in f.lines)]
            self.lines[lid].promised_by = max(held, default=None)  # promised again from what still holds it
        self._event("modified_after_release", {
            "lines": [{"line_id": k, "qty": self.lines[k].qty - self.lines[k].cancelled_qty} for k in qty],
            "requested_delivery_date": self.requested_date.isoformat() if self.requested_date else None})
        await self._resource_open("b2b_change", promised_before=before)
        await self._publish()

    def _check_cancellable(self, body: CancelIn) -> dict[str, int]:
        status = self._status()
        if self.phase in (OS.received, OS.cancelled, OS.rejected) or status in (
                OS.delivered, OS.returned, OS.partially_returned, OS.shipped):
            raise conflict(f"order is {status.value}: nothing left to cancel")
        if self.phase == OS.released and self.settled:
            raise conflict("order is closed")
        want: dict[str, int] = {}
        for lid, line in self.lines.items():
            if body.lines is not None and lid not in {c.line_id for c in body.lines}:
                continue
            want[lid] = line.qty - line.cancelled_qty - self._shipped_qty(lid)
        if body.lines is not None:
            for c in body.lines:
                if c.line_id not in self.lines:
                    raise invalid(f"unknown line {c.line_id}")
                if want[c.line_id] <= 0:
                    raise conflict(f"line {c.line_id} has already shipped or is cancelled")
                if c.qty is not None:
                    if c.qty > want[c.line_id]:
                        raise conflict(f"line {c.line_id}: only {want[c.line_id]} units can still be cancelled")
                    want[c.line_id] = c.qty
        want = {k: v for k, v in want.items() if v > 0}
        if not want:
            raise conflict("nothing left to cancel: every unit has shipped or is cancelled")
        return want

    def _check_reorchestrate(self, body: ReorchestrateIn) -> None:
        if self.phase != OS.released or self.settled:
            raise conflict(f"order is {self._status().value}: only released orders can be reorchestrated")
        if body.fulfillment_id:
            f = self.fulfillments.get(body.fulfillment_id)
            if f is None:
                raise invalid(f"unknown fulfillment {body.fulfillment_id}")
            if f.status not in (FS.released, FS.accepted) and f.status not in FULFILLMENT_FAILED:
                raise conflict(f"fulfillment {f.fulfillment_id} is {f.status.value}: too late to move it")
        elif self._open_total() == 0:
            raise conflict("nothing to reorchestrate: every unit is with a node")

    def _check_return(self, body: ReturnIn) -> None:
        digital = sorted({l.line_id for l in body.lines if l.line_id in self.lines and self.lines[l.line_id].digital})
        if digital:
            raise conflict(f"digital lines cannot be returned: {', '.join(digital)}")
        deadline = self._return_deadline()
        if deadline is None:
            raise conflict("nothing has been delivered yet")
        if workflow.now() > deadline:
            raise conflict(f"the return window closed at {deadline.isoformat()}")
        if body.method == "in_store" and not body.node_id:
            raise invalid("an in-store return needs node_id")
        requested: dict[str, int] = {}
        for r in self.returns.values():
            for rl in r.lines:
                requested[rl.line_id] = requested.get(rl.line_id, 0) + rl.qty
        seen = set()
        for l in body.lines:
            if l.line_id not in self.lines:
                raise invalid(f"unknown line {l.line_id}")
            if l.line_id in seen:
                raise invalid(f"line {l.line_id} appears twice")
            seen.add(l.line_id)
            can = self.lines[l.line_id].delivered_qty - requested.get(l.line_id, 0)
            if l.qty > can:
                raise conflict(f"line {l.line_id}: only {max(can, 0)} delivered units can be returned")

    def _check_receive(self, return_id: str, body: ReceiveIn) -> bool:
        r = self.returns.get(return_id)
        if r is None:
            raise invalid(f"unknown return {return_id}")
        if r.status != ReturnStatus.requested:
            return False  # received already: the refund went out once
        asked = {rl.line_id: rl.qty for rl in r.lines}
        for l in body.lines:
            if l.line_id not in asked:
                raise invalid(f"line {l.line_id} is not part of return {return_id}")
            if l.qty > asked[l.line_id]:
                raise invalid(f"line {l.line_id}: received {l.qty} but only {asked[l.line_id]} were returned")
        return True

    # ================================================================== cancellation after release
    async def _cancel_released(self, want: dict[str, int], reason: str) -> None:
        # Units nobody holds yet go first; then unshipped fulfillments, newest first.
        for lid in list(want):
            take = min(want[lid], self._open_qty(lid))
            if take:
                self.lines[lid].cancelled_qty += take
                want[lid] -= take
        await self._trim_claims()
        # Then preorders reserved but not yet at a node.
        held = {lid: min(q, self._planned_qty(lid)) for lid, q in want.items()}
        if any(held.values()):
            await self._release_planned("cancelled", held)
            for lid, q in held.items():
                self.lines[lid].cancelled_qty += q
                want[lid] -= q
        per_f: dict[str, dict[str, int]] = {}
        for f in sorted(self.fulfillments.values(), key=lambda f: f.fulfillment_id, reverse=True):
            if f.status not in FULFILLMENT_UNSHIPPED:
                continue
            for l in f.lines:
                take = min(want.get(l.line_id, 0), l.qty)
                if take:
                    per_f.setdefault(f.fulfillment_id, {})[l.line_id] = take
                    want[l.line_id] -= take
        await self._cancel_fulfillments({fid: lines for fid, lines in per_f.items()}, reason)

    async def _trim_claims(self) -> None:
        """Claims on incoming supply never exceed a line's open units: cancelled ones go back, latest ETA first."""
        trimmed = {}
        for lid, claims in self.claims.items():
            extra = sum(c.qty for c in claims) - (self._open_qty(lid) if lid in self.lines else 0)
            if extra <= 0:
                continue
            keep = []
            for c in reversed(claims):
                drop = min(extra, c.qty)
                extra -= drop
                if c.qty - drop:
                    keep.insert(0, SupplyClaimLine(line_id=lid, supply_id=c.supply_id, sku=c.sku, qty=c.qty - drop))
            trimmed[lid] = keep
        if not trimmed:
            return
        # Shrinking claims always fits: the reserve activity replaces them in one transaction.
        await call("inventory.reserve", ReserveRequest(
            order_id=self.inp.order_id, fulfillments=[], at=workflow.now(), claim_lines=sorted(trimmed),
            supply_claims=[c for keep in trimmed.values() for c in keep]), ReserveResult)
        for lid, keep in trimmed.items():
            if keep:
                self.claims[lid] = keep
            else:
                self.claims.pop(lid)

    async def _cancel_fulfillments(self, targets: dict[str, Optional[dict[str, int]]], reason: str,
                                   move: bool = False) -> None:
        """Ask fulfillments to drop units and wait for their answers (they refuse once shipped)."""
        pending = []
        for fid, lines in targets.items():
            self.c_seq += 1
            rid = f"{self.inp.order_id}:cancel:{self.c_seq}"
            req = CancelLines(request_id=rid, reason=reason, move=move, lines=None if lines is None else [
                LineQty(line_id=k, qty=v) for k, v in lines.items()])
            try:
                await workflow.get_external_workflow_handle(fid).signal(FulfillmentWorkflow.cancel_lines, req)
            except Exception:
                # It finished meanwhile (shipped, rejected, timed out): its last event says what happened.
                self.cancel_replies[rid] = 1
            pending.append(rid)
        while not all(r in self.cancel_replies for r in pending):
            await workflow.wait_condition(lambda: bool(self.events))
            await self._process_events()

    # ================================================================== money
    async def _authorize(self, amount: Decimal) -> bool:
        self.auth_round += 1
        payment = await call("payments.call", self._payment(
            "authorization", f"{self.inp.order_id}:auth:{self.auth_round}", amount), PaymentRecord)
        self.payments.append(payment)
        if payment.status != "succeeded":
            return False
        self.authorized = amount
        self._event("payment_authorized", {"amount": str(amount)})
        return True

    async def _reauthorize(self, amount: Decimal) -> None:
        old = self.authorized
        if not await self._authorize(amount):
            raise conflict("payment for the modified order was declined")
        void = await call("payments.call", self._payment(
            "void", f"{self.inp.order_id}:void:{self.auth_round - 1}", old), PaymentRecord)
        self.payments.append(void)

    def _payment(self, kind: str, key: str, amount: Decimal, return_id: Optional[str] = None) -> PaymentRequest:
        return PaymentRequest(order_id=self.inp.order_id, idempotency_key=key, kind=kind, amount=amount,
                              currency=self.inp.currency, return_id=return_id, at=workflow.now())

    def _order_total(self) -> Decimal:
        return sum((l.unit_price * (l.qty - l.cancelled_qty) for l in self.lines.values()), Decimal("0"))

    # ================================================================== quantities and statuses
    def _planned_qty(self, line_id: str) -> int:
        """Units of a line reserved but not yet at a node (remorse window, preorders before release)."""
        return sum(l.qty for a in self.planned for l in a.lines if l.line_id == line_id)

    def _allocated(self, line_id: str) -> int:
        n = self._planned_qty(line_id)
        n += sum(l.qty for f in self.fulfillments.values() if f.status not in FULFILLMENT_FAILED
                 for l in f.lines if l.line_id == line_id)
        return n

    def _open_qty(self, line_id: str) -> int:
        line = self.lines[line_id]
        if line.digital:
            return 0  # nothing to source
        return max(line.qty - line.cancelled_qty - self._allocated(line_id), 0)

    def _open_total(self) -> int:
        return sum(self._open_qty(lid) for lid in self.lines)

    def _fulfilled_qty(self, line_id: str, statuses: set[FS]) -> int:
        line = self.lines[line_id]
        if line.digital:
            return line.qty - line.cancelled_qty if self.digital_at and FS.delivered in statuses else 0
        return sum(l.qty for f in self.fulfillments.values() if f.status in statuses
                   for l in f.lines if l.line_id == line_id)

    def _shipped_qty(self, line_id: str) -> int:
        return self._fulfilled_qty(line_id, SHIPPED)

    def _active(self) -> bool:
        return any(f.status not in FULFILLMENT_TERMINAL for f in self.fulfillments.values())

    def _done(self) -> bool:
        return self.phase != OS.released or (
            not self._active() and self._open_total() == 0 and not self.events and not self.planned)

    def _refresh_lines(self) -> None:
        for lid, line in self.lines.items():
            line.shipped_qty = self._shipped_qty(lid)
            line.delivered_qty = self._fulfilled_qty(lid, {FS.delivered})
            line.status = self._line_status(line).value

    def _line_status(self, line: LineState) -> OS:
        live = line.qty - line.cancelled_qty
        if self.phase in (OS.received, OS.awaiting_release, OS.rejected) or (self.phase == OS.cancelled):
            return OS.cancelled if live <= 0 and self.phase != OS.rejected else self.phase
        if live <= 0:
            return OS.cancelled
        if line.returned_qty:
            return OS.returned if line.returned_qty >= live else OS.partially_returned
        if line.delivered_qty >= live:
            return OS.delivered
        if line.shipped_qty >= live:
            return OS.shipped
        if line.shipped_qty:
            return OS.partially_shipped
        if self._open_qty(line.line_id):
            return OS.backordered
        if not self._fulfilled_qty(line.line_id, set(FS)) and self._planned_qty(line.line_id):
            return OS.awaiting_release  # a preorder before its release day
        return OS.released

    def _status(self) -> OS:
        if self.phase != OS.released:
            return self.phase
        live = sum(l.qty - l.cancelled_qty for l in self.lines.values())
        if live <= 0:
            return OS.cancelled
        shipped = sum(l.shipped_qty for l in self.lines.values())
        delivered = sum(l.delivered_qty for l in self.lines.values())
        returned = sum(l.returned_qty for l in self.lines.values())
        if returned:
            return OS.returned if returned >= live else OS.partially_returned
        if delivered >= live:
            return OS.delivered
        if shipped >= live:
            return OS.shipped
        if shipped:
            return OS.partially_shipped
        if self._open_total():
            return OS.backordered
        if self.planned and not self.fulfillments:
            return OS.awaiting_release  # preorders before their release day
        return OS.released

    def _return_deadline(self) -> Optional[datetime]:
        delivered = [f.delivered_at for f in self.fulfillments.values() if f.delivered_at]
        return max(delivered) + self.inp.windows.return_window if delivered else None

    def _delivering_node(self, line_id: str) -> str:
        for f in self.fulfillments.values():
            if f.status == FS.delivered and any(l.line_id == line_id for l in f.lines):
                return f.node_id
        return next(iter(self.fulfillments.values())).node_id

    def _promised_by(self) -> Optional[datetime]:
        dates = [l.promised_by for l in self.lines.values() if l.promised_by and l.qty > l.cancelled_qty]
        return max(dates) if dates else None

    def _promised_by_iso(self) -> Optional[str]:
        pb = self._promised_by()
        return pb.isoformat() if pb else None

    # ================================================================== modification
    def _apply_modification(self, body: ModifyIn) -> dict[str, LineState]:
        if body.lines is None:
            lines = {lid: l.model_copy(deep=True) for lid, l in self.lines.items()}
        else:
            lines = {}
            used = {l.line_id for l in body.lines if l.line_id}
            n = 0
            for m in body.lines:
                lid = m.line_id
                if not lid:
                    n += 1
                    while f"L{n}" in used or f"L{n}" in self.lines:
                        n += 1
                    lid = f"L{n}"
                    used.add(lid)
                delivery = m.delivery or (self.lines[lid].delivery if lid in self.lines
                                          else next(iter(self.lines.values())).delivery)
                lines[lid] = self._line_state(Line(line_id=lid, sku=m.sku, qty=m.qty, unit_price=m.unit_price,
                                                   delivery=delivery))
        if body.address is not None:
            for l in lines.values():
                if l.delivery.method not in (DeliveryMethod.pickup, DeliveryMethod.curbside):
                    l.delivery = Delivery(method=l.delivery.method, address=body.address)
        return lines

    def _forget_sourcing(self) -> None:
        """Before the lines are sourced afresh (a modification, or putting one back)."""
        for l in self.lines.values():
            l.promised_by, l.digital = None, False

    # ================================================================== failure exits
    async def _reject(self, reason: str) -> None:
        await self._release_planned("order_rejected")
        self.phase, self.reason = OS.rejected, reason
        self._event("rejected", {"reason": reason})
        await self._notify("rejected", "rejected", {"reason": reason})
        await self._publish()

    # ================================================================== mirrors: timeline, read model, search
    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.t_seq += 1
        self.timeline.append(TimelineEntry(key=f"o{self.t_seq}", at=workflow.now(), event=event, detail=detail))

    async def _notify(self, event: str, key: str, detail: dict[str, Any]) -> None:
        await call("notify.send", Notification(order_id=self.inp.order_id, event=event,
                                               key=f"{self.inp.order_id}:{key}", detail=detail), None)

    async def _publish(self) -> None:
        """Mirror the state into the read model and the search attributes."""
        self._refresh_lines()
        self.version += 1
        timeline, self.timeline = self.timeline, []
        state = self._state()
        await mirror("read_model.record_order", OrderSnapshot(
            state=state, customer_email=self.inp.customer.email, total=self._order_total(),
            timeline=timeline, created_at=self.created_at or workflow.now()))
        nodes = sorted({f.node_id for f in self.fulfillments.values()} | {a.node_id for a in self.planned})
        sa = (state.status.value, tuple(nodes), state.promised_by, state.at_risk)
        if sa != self.sa_last:
            self.sa_last = sa
            updates = [ORDER_STATUS.value_set(state.status.value), CHANNEL.value_set(self.inp.channel),
                       CUSTOMER_ID.value_set(self.inp.customer.id), FULFILLMENT_NODES.value_set(nodes),
                       AT_RISK.value_set(state.at_risk)]
            if state.promised_by:
                updates.append(PROMISED_BY.value_set(state.promised_by))
            workflow.upsert_search_attributes(updates)

    def _state(self) -> OrderState:
        fulfillments = list(self.fulfillments.values())
        return OrderState(
            order_id=self.inp.order_id, external_id=self.inp.external_id, channel=self.inp.channel,
            customer_id=self.inp.customer.id, customer_tier=self.inp.customer.tier, status=self._status(),
            currency=self.inp.currency, policy=self.policy, requested_delivery_date=self.requested_date,
            lines=list(self.lines.values()), fulfillments=fulfillments, returns=list(self.returns.values()),
            payments=list(self.payments), promised_by=self._promised_by(),
            delivered_at=max([f.delivered_at for f in fulfillments if f.delivered_at]
                             + ([self.digital_at] if self.digital_at else []), default=None),
            return_deadline=self._return_deadline(), reason=self.reason, version=self.version,
            at_risk=any(f.at_risk for f in fulfillments if f.status not in FULFILLMENT_TERMINAL),
        )

    def _placed(self) -> PlacedOrder:
        return PlacedOrder(order_id=self.inp.order_id, status=self._status(), promise=PromiseView(
            promised_by=self._promised_by(),
            lines=[{"line_id": l.line_id, "promised_by": l.promised_by.isoformat() if l.promised_by else None}
                   for l in self.lines.values()],
        ))

    @staticmethod
    def _line_state(l: Line) -> LineState:
        return LineState(line_id=l.line_id, sku=l.sku, qty=l.qty, unit_price=l.unit_price, delivery=l.delivery)
