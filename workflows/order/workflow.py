"""The order workflow (type "Order", one per order, workflow id = order id), in the order of an order's life:

    place (capture → promise: plan → reserve → authorize → confirm)
    → remorse window (Updates modify / cancel) → release to nodes
    → follow fulfillments (reroute on rejection or timeout, re-source short picks, wait for stock, release held
      work on its day, keep the authorization alive)
    → settle (void what will not be captured) → return window (Updates request_return / receive_return)
    → close.

Each handler sits beside its validator and delegates; the book (book.py) holds all state and the modules
beside this one hold the work. Handlers and the main loop take turns under one lock, so activities never
interleave on the same order. A long-lived order continues as new before its history grows large, carrying
its book (and any event not yet applied) once every handler has finished.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Optional

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        ApproveIn, CancelIn, DeclineIn, ExchangeIn, ExchangeResult, FulfillmentEvent, ModifyIn, OrderInput, OrderState, PlacedOrder,
        ReceiveIn, ReorchestrateIn, ReturnIn, ReturnResult,
    )
    from models.status import OrderStatus as OS
    import workflows.activities as activities
    from workflows.common import IDEMPOTENT_UPDATE, Input, parse, refusal
    import workflows.order.approval as approval
    import workflows.order.changes as changes
    import workflows.order.events as events
    import workflows.order.exchanges as exchanges
    import workflows.order.money as money
    import workflows.order.returns as returns
    import workflows.order.rules as rules
    import workflows.order.sourcing as sourcing
    from workflows.order.book import Book, carried
    from workflows.order.mirror import header, iso, notify, placed, publish, state

# Backordered units are tried again this often when nothing wakes them, backing off to the cap while nothing
# changes; a stock or supply change wakes the order at once, after SETTLE gathers the rest of a burst.
BACKORDER_RETRY = timedelta(hours=1)
BACKORDER_RETRY_CAP = timedelta(hours=24)
SETTLE = timedelta(seconds=2)
PAYMENT_RETRY = timedelta(hours=12)
REMEMBERED_UPDATES = 200  # Idempotency-Keyed Updates the book carries across runs


@workflow.defn(name="Order")
class OrderWorkflow:
    @workflow.init
    def __init__(self, inp: OrderInput, book: Optional[Book] = None) -> None:
        self.book = book or Book.new(inp)
        self.lock = asyncio.Lock()

    # ================================================================== the order's life
    @workflow.run
    async def run(self, inp: OrderInput, book: Optional[Book] = None) -> OrderState:
        b = self.book
        if b.phase == OS.received:
            await self.place(inp)
        if b.phase == OS.awaiting_approval:
            await self.await_approval()
        if b.phase == OS.awaiting_release:
            await self.remorse_window()
        if b.phase == OS.released:
            await self.follow_fulfillments()
        async with self.lock:
            if await money.settle(b):
                await publish(b)
        await self.return_window()
        return await self.close()

    async def place(self, inp: OrderInput) -> None:
        b = self.book
        b.created_at = workflow.now()
        b.release_at = b.created_at + b.order.windows.remorse
        # Lines ordered by the case or pallet, in both units (the timeline's routing and fulfillments count eaches).
        packed = [{"line_id": l.line_id, "uom": l.uom, "qty": l.qty // l.pack, "eaches": l.qty}
                  for l in b.lines.values() if l.pack > 1][:sourcing.LISTED_LINES]
        b.note("order_received", {"channel": b.order.channel, "lines": len(b.lines),
                                  **({"in_packs": packed} if packed else {})})
        if (ex := b.order.exchange_of) is not None:
            b.note("exchange_of", {"order_id": ex.order_id, "exchange_id": ex.exchange_id, "return_id": ex.return_id,
                                   "advance": ex.advance})
        async with self.lock:
            try:
                await activities.capture(inp)
            except (ActivityError, ApplicationError) as e:
                why = refusal(e)
                if why is None:
                    raise
                await self.reject(why)
                return
            plan = await sourcing.source(b, {l.line_id: l.open for l in b.lines.values()}, b.policy,
                                         reason="initial", release_now=False)
            if plan is None or not plan.feasible:
                await self.reject(plan.reason if plan else "no node can serve this order")
                return
            await sourcing.drop_unavailable(b)
            if b.total.live <= 0:
                await self.reject("nothing is available now, and the order cancels what is not (cancel_remaining)")
                return
            amount = b.total_amount()
            # A replacement its returned units pay for whole asks the card for nothing.
            if not (b.order.exchange_of and amount <= 0) and not await money.authorize(b, amount):
                await sourcing.release_planned(b, "payment_declined")
                b.enter(OS.cancelled, "payment declined")
                await notify(b, "cancelled", "cancelled", {"reason": "payment declined"})
                await publish(b)
                return
            held = "approval required" if b.policy.approval_required else None
            if b.order.customer.account is not None:
                held = await money.credit_check(b, amount) or held
            if held:
                await approval.request(b, held)
            else:
                b.enter(OS.awaiting_release)
                b.note("awaiting_release", {"until": iso(b.release_at), "promised_by": iso(b.promised_by())})
            # Told and mirrored side by side: POST /orders answers when both are done.
            await asyncio.gather(notify(b, "confirmed", "confirmed", {"promised_by": iso(b.promised_by())}),
                                 publish(b))
            b.promise_ready = True

    async def reject(self, reason: str) -> None:
        b = self.book
        await sourcing.release_planned(b, "order_rejected")
        b.enter(OS.rejected, reason)
        b.note("rejected", {"reason": reason})
        await notify(b, "rejected", "rejected", {"reason": reason})
        await publish(b)
        if b.order.exchange_of:
            await exchanges.tell_original(b, "exchange_failed", reason)

    async def await_approval(self) -> None:
        b = self.book
        assert b.approval_until is not None
        try:
            await workflow.wait_condition(lambda: b.phase != OS.awaiting_approval,
                                          timeout=max((b.approval_until - workflow.now()).total_seconds(), 0.001),
                                          timeout_summary="approval: approve or decline until then")
        except asyncio.TimeoutError:
            pass
        async with self.lock:
            await approval.expire(b)

    async def remorse_window(self) -> None:
        b = self.book
        assert b.release_at is not None
        left = (b.release_at - workflow.now()).total_seconds()
        if left > 0:
            try:
                await workflow.wait_condition(lambda: b.phase != OS.awaiting_release, timeout=left,
                                              timeout_summary="remorse window: modify or cancel until then")
            except asyncio.TimeoutError:
                pass
        ex = b.order.exchange_of
        if ex is not None and not ex.advance:
            # An even exchange ships its replacement once the returned units have arrived.
            await workflow.wait_condition(
                lambda: b.exchange_cleared or b.exchange_void or b.phase != OS.awaiting_release,
                timeout_summary=f"the return {ex.return_id} of exchange {ex.exchange_id}")
        async with self.lock:
            if b.phase == OS.awaiting_release and b.exchange_void and not b.exchange_cleared:
                await changes.cancel(b, CancelIn(reason="the exchanged units never came back"))
            elif b.phase == OS.awaiting_release:
                await self.release()

    async def release(self) -> None:
        b = self.book
        b.enter(OS.released)
        started = await sourcing.release_due(b)
        b.note("released", {"fulfillments": started,
                            "held_until": {p.fulfillment_id: iso(p.hold_until) for p in b.planned.values()}})
        await self.deliver_digital()
        await notify(b, "released", "released", {"fulfillments": len(started)})
        if b.total.open:
            await sourcing.resource(b, "backorder_retry")  # stock may have come in during the remorse window
        await publish(b)

    async def deliver_digital(self) -> None:
        """Digital lines need no node: they are captured and delivered the moment the order is released."""
        b = self.book
        due = [l for l in b.lines.values() if l.digital and l.live > 0]
        if not due:
            return
        amount = sum((l.unit_price * l.live for l in due), Decimal("0"))
        await money.capture_digital(b, amount)
        b.digital_at = workflow.now()
        for l in due:
            b.edit(l, shipped=l.live - l.shipped, delivered=l.live - l.delivered)
        b.note("digital_delivered", {"lines": [{"line_id": l.line_id, "qty": l.live} for l in due],
                                     "amount": str(amount)})
        await notify(b, "delivered", "digital:delivered", {"lines": sorted(l.line_id for l in due)})

    async def follow_fulfillments(self) -> None:
        b = self.book
        while not self.done():
            try:
                await workflow.wait_condition(lambda: bool(b.events) or b.wake or self.done(),
                                              timeout=self.next_timer(), timeout_summary=self.waiting_for())
            except asyncio.TimeoutError:
                async with self.lock:
                    await self.on_timer()
                await self.continue_if_long()
                continue
            if b.wake:
                await workflow.sleep(SETTLE, summary="let a burst of stock changes settle")
                b.wake = False
                async with self.lock:
                    if b.total.open and b.phase == OS.released:
                        b.retry_every = None
                        await sourcing.resource(b, "supply_changed")
                        await publish(b)
            async with self.lock:
                await events.apply_all(b)
            await self.continue_if_long()

    def done(self) -> bool:
        b = self.book
        return b.phase != OS.released or (not b.active() and b.total.open == 0 and not b.events and not b.planned)

    def next_timer(self) -> Optional[float]:
        b = self.book
        ends = money.hold_ends(b)
        if ends is not None:
            # On hold for the payment: try the authorization again now and then, until the hold ends.
            return max(min((ends - workflow.now()).total_seconds(), PAYMENT_RETRY.total_seconds()), 0.001)
        waits = [max(sourcing.hold_left(p), 0.001) for p in b.planned.values()]
        if b.total.open:  # units waiting for stock are tried again, whatever else is under way
            waits.append((b.retry_every or BACKORDER_RETRY).total_seconds())
        return min(waits) if waits else None

    def waiting_for(self) -> str:
        b = self.book
        if b.money.hold_since is not None:
            return "payment hold: a renewed authorization or the hold's end"
        if b.planned:
            return "the release day of held fulfillments"
        return "the next backorder retry, and fulfillments" if b.total.open else "fulfillments"

    async def on_timer(self) -> None:
        b = self.book
        if b.phase != OS.released:
            return
        ends = money.hold_ends(b)
        if ends is not None and workflow.now() >= ends:
            await self.cancel_for_payment()
            return
        if b.planned:
            started = await sourcing.release_due(b)
            if started:
                b.note("preorder_released", {"fulfillments": started})
                await publish(b)
                return
            if b.money.hold_since is not None:
                await publish(b)
                return
        if b.total.open:
            plan = await sourcing.resource(b, "backorder_retry")
            sourced = plan is not None and plan.feasible and not plan.unfilled
            b.retry_every = None if sourced else min((b.retry_every or BACKORDER_RETRY) * 2, BACKORDER_RETRY_CAP)
            await publish(b)

    async def cancel_for_payment(self) -> None:
        """The payment hold ended without a good authorization: what has not shipped is cancelled."""
        b = self.book
        want = {l.line_id: l.live - l.shipped for l in b.lines.values() if l.live > l.shipped}
        b.money.hold_since = None
        await changes.cancel_units(b, want, "payment declined")
        b.note("lines_cancelled", {"reason": "payment declined", "lines": [{"line_id": k, "qty": v}
                                                                          for k, v in want.items()]})
        if b.total.live <= 0:
            b.enter(OS.cancelled, "payment declined")
            await money.settle(b)
        await notify(b, "cancelled", "cancelled:payment", {"reason": "payment declined"})
        await publish(b)

    async def return_window(self) -> None:
        """Stay open for returns until the window after the last delivery ends and no return is open."""
        b = self.book
        while b.return_deadline() is not None:
            deadline = b.return_deadline()
            assert deadline is not None
            left = (deadline - workflow.now()).total_seconds()
            if left <= 0 and not returns.open_returns(b):
                return
            seen = b.ids.version
            timeout, summary = (left if left > 0 else None), "the return window's end"
            if (due := exchanges.next_due(b)) is not None:  # an exchange's return is due before the window ends
                until = max((due - workflow.now()).total_seconds(), 0.001)
                timeout, summary = (until if timeout is None else min(timeout, until)), "an exchange's return"
            try:
                await workflow.wait_condition(lambda: b.ids.version != seen, timeout=timeout,
                                              timeout_summary=summary)
            except asyncio.TimeoutError:
                pass
            if due is not None and workflow.now() >= due:
                async with self.lock:
                    await exchanges.expire_due(b)
            await self.continue_if_long()

    async def close(self) -> OrderState:
        b = self.book
        async with self.lock:
            await sourcing.release_claims(b)
            b.note("order_closed", {"status": b.status().value})
            await publish(b)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state(b)

    async def continue_if_long(self) -> None:
        """Before the history grows large, continue as new with the book (after every handler has finished)."""
        info = workflow.info()
        if not (info.is_continue_as_new_suggested()
                or info.get_current_history_length() >= self.book.order.windows.history_limit):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        b = self.book
        b.answered.clear()
        b.note("continued_as_new", {"history_events": info.get_current_history_length()})
        async with self.lock:
            await publish(b)
        b.ids.runs += 1
        workflow.continue_as_new(args=[b.order, carried(b)])

    # ================================================================== Updates, signals, query
    @workflow.update
    async def await_promise(self) -> PlacedOrder:
        """Returns once the order is promised (or refused): what POST /orders answers."""
        b = self.book
        await workflow.wait_condition(lambda: b.promise_ready or b.phase in (OS.rejected, OS.cancelled))
        return placed(b)

    def applied_before(self) -> Optional[str]:
        """What an earlier run of this order made of this Update (the API's retry of a request it applied before
        continuing as new), or None: Temporal itself runs an Update id once per run."""
        info = workflow.current_update_info()
        return self.book.applied.get(info.id) if info else None

    def judged_now(self) -> bool:
        """Whether a validator judges this Update on the book as it is. Not when fulfillment events wait to be
        applied: they came in this workflow task, the read model may already show them (its mirror ran in an
        attempt of the task that was retried), and the caller acts on that. The handler judges after them."""
        return self.applied_before() is None and not self.book.events

    async def caught_up(self) -> None:
        """Apply the fulfillment events that came with an Update before acting on it (under the lock)."""
        if self.book.events and workflow.patched("updates-apply-pending-events"):
            await events.apply_all(self.book)

    def remember(self, made: str = "") -> None:
        info = workflow.current_update_info()
        if info and info.id.startswith(IDEMPOTENT_UPDATE):
            self.book.applied[info.id] = made
            while len(self.book.applied) > REMEMBERED_UPDATES:
                del self.book.applied[next(iter(self.book.applied))]

    @workflow.update(description='Inside the remorse window: new lines, address or policy, e.g. {"address": '
                              '{"postal_code": "10001", "line1": "2 Main St"}} (as PATCH /orders/{id})')
    async def modify(self, body: Input) -> PlacedOrder:
        async with self.lock:
            if self.applied_before() is None:
                await self.caught_up()
                await changes.modify(self.book, parse(ModifyIn, body, "modify"))
                self.remember()
            return placed(self.book)

    @modify.validator
    def _v_modify(self, body: Input) -> None:
        if self.judged_now():
            rules.check_modify(self.book, parse(ModifyIn, body, "modify"))

    @workflow.update(description='Cancel the order or some lines, e.g. {"reason": "customer called"} or {"lines": '
                              '[{"line_id": "L1", "qty": 1}], "reason": "..."} (as POST /orders/{id}/cancel)')
    async def cancel(self, body: Input) -> OrderState:
        async with self.lock:
            if self.applied_before() is None:
                await self.caught_up()
                await changes.cancel(self.book, parse(CancelIn, body, "cancel"))
                self.remember()
                if self.book.order.exchange_of and self.book.phase == OS.cancelled:
                    await exchanges.tell_original(self.book, "exchange_failed", "the replacement was cancelled")
            return header(self.book)

    @cancel.validator
    def _v_cancel(self, body: Input) -> None:
        if self.judged_now():
            rules.check_cancellable(self.book, parse(CancelIn, body, "cancel"))

    @workflow.update(description='Approve an order awaiting approval, e.g. {"note": "PO 4711 ok"} (as POST '
                              '/orders/{id}/approve)')
    async def approve(self, body: Input) -> OrderState:
        async with self.lock:
            if self.applied_before() is None:
                await approval.approve(self.book, parse(ApproveIn, body, "approve"))
                self.remember()
            return header(self.book)

    @approve.validator
    def _v_approve(self, body: Input) -> None:
        if self.applied_before() is None:
            parse(ApproveIn, body, "approve")
            approval.check(self.book)

    @workflow.update(description='Decline an order awaiting approval, e.g. {"reason": "over budget"} (as POST '
                              '/orders/{id}/decline): it is cancelled')
    async def decline(self, body: Input) -> OrderState:
        async with self.lock:
            if self.applied_before() is None:
                await approval.decline(self.book, parse(DeclineIn, body, "decline"))
                self.remember()
            return header(self.book)

    @decline.validator
    def _v_decline(self, body: Input) -> None:
        if self.applied_before() is None:
            parse(DeclineIn, body, "decline")
            approval.check(self.book)

    @workflow.update(description='Support: re-source a stuck or rejected fulfillment, e.g. {"fulfillment_id": '
                              '"ORD-…-F1", "exclude_nodes": ["DC-EAST"], "reason": "DC flooded"}; to_node picks '
                              'the node (as POST /orders/{id}/reorchestrate)')
    async def reorchestrate(self, body: Input) -> OrderState:
        async with self.lock:
            if self.applied_before() is None:
                await self.caught_up()
                await changes.reorchestrate(self.book, parse(ReorchestrateIn, body, "reorchestrate"))
                self.remember()
            return header(self.book)

    @reorchestrate.validator
    def _v_reorchestrate(self, body: Input) -> None:
        if self.judged_now():
            rules.check_reorchestrate(self.book, parse(ReorchestrateIn, body, "reorchestrate"))

    @workflow.update
    async def request_return(self, body: ReturnIn) -> ReturnResult:
        async with self.lock:
            if (made := self.applied_before()) is not None:
                return returns.result(self.book, made)
            await self.caught_up()
            result = await returns.request(self.book, body)
            self.remember(result.return_id)
            return result

    @request_return.validator
    def _v_request_return(self, body: ReturnIn) -> None:
        if self.judged_now():
            rules.check_return(self.book, body, workflow.now())

    @workflow.update(description='Exchange delivered units for others, e.g. {"lines": [{"line_id": "L1", "qty": 1, '
                              '"sku": "TEE-M"}], "reason": "size", "advance": true} (as POST /orders/{id}/exchanges)')
    async def request_exchange(self, body: ExchangeIn) -> ExchangeResult:
        async with self.lock:
            if (made := self.applied_before()) is not None:
                x = self.book.exchanges[made]
                return ExchangeResult(exchange_id=x.exchange_id, return_id=x.return_id,
                                      replacement_order_id=x.replacement_order_id,
                                      label=self.book.returns[x.return_id].label)
            await self.caught_up()
            result = await exchanges.request(self.book, body)
            self.remember(result.exchange_id)
            return result

    @request_exchange.validator
    def _v_request_exchange(self, body: ExchangeIn) -> None:
        if self.judged_now():
            rules.check_exchange(self.book, body, workflow.now())

    @workflow.update
    async def receive_return(self, return_id: str, body: ReceiveIn) -> ReturnResult:
        async with self.lock:
            return await returns.receive(self.book, return_id, body, exchanges.returned)

    @receive_return.validator
    def _v_receive_return(self, return_id: str, body: ReceiveIn) -> None:
        rules.check_receive(self.book, return_id, body)

    @workflow.signal
    def fulfillment_event(self, ev: FulfillmentEvent) -> None:
        self.book.events.append(ev)

    @workflow.signal
    def exchange_returned(self) -> None:
        """A replacement's exchange: the returned units arrived (an even exchange releases it now)."""
        self.book.exchange_cleared = True

    @workflow.signal
    def exchange_void(self) -> None:
        """A replacement's exchange: the units never came back (an even exchange's replacement is cancelled)."""
        self.book.exchange_void = True

    @workflow.signal
    async def exchange_failed(self, exchange_id: str, why: str) -> None:
        """An exchange's replacement could not be placed, or was cancelled: its return is a plain one now."""
        async with self.lock:
            await exchanges.failed(self.book, exchange_id, why)

    @workflow.signal(name="supply_changed")
    def supply_changed(self) -> None:
        """Stock or incoming supply of one of this order's SKUs changed: try the backorder again now."""
        self.book.wake = True

    @workflow.query
    def state(self) -> OrderState:
        return state(self.book)
