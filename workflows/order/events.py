"""What fulfillments tell the order, and what the order asks of them.

A fulfillment signals its order only when the order has something to do: it handed units back (rejected,
timed out, short pick, moved), it shipped (with its capture) or delivered, a promise milestone was missed,
or it answers a cancellation. Events are applied in order, once (by their sequence number).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import CancelLines, FulfillmentEvent, LineQty
    from models.status import FULFILLMENT_DELIVERED, FULFILLMENT_FAILED, FulfillmentStatus as FS, OrderStatus as OS
    from workflows.fulfillment import FulfillmentWorkflow
    import workflows.order.exceptions as exceptions
    import workflows.order.money as money
    import workflows.order.sourcing as sourcing
    from workflows.order.book import Book, lines_of
    from workflows.order.mirror import iso, notify, publish

# How long the order waits for fulfillments to answer a cancellation before it answers its caller; a late
# answer is applied when it comes.
ANSWER_WAIT = timedelta(minutes=5)


async def apply_all(book: Book) -> None:
    while book.events:
        await apply(book, book.events.pop(0))


async def apply(book: Book, ev: FulfillmentEvent) -> None:
    f = book.fulfillments.get(ev.fulfillment_id)
    if f is None or ev.seq <= f.last_seq:
        return  # unknown or already applied
    f.last_seq = ev.seq
    before = f.status
    book.update_fulfillment(f, ev.status, f.lines if ev.lines is None else list(ev.lines))
    f.reason, f.carrier, f.tracking = ev.reason, ev.carrier, ev.tracking
    if ev.at_risk and ev.at_risk != f.at_risk:
        book.note("at_risk", {"fulfillment_id": f.fulfillment_id, "node_id": f.node_id, "why": ev.at_risk,
                              "promised_by": iso(book.promised_by())})
        await notify(book, "at_risk", f"{f.fulfillment_id}:at_risk:{ev.at_risk}", {"promised_by": iso(book.promised_by())})
    f.at_risk = ev.at_risk
    if f.prepaid and ev.status != before and ev.status != FS.exception and (
            ev.status == FS.shipped or ev.status in FULFILLMENT_FAILED):
        exceptions.give_back_prepaid(book, f, lines_of(f.lines) if ev.status == FS.shipped else {})
    if ev.status == FS.shipped and before != FS.shipped:
        f.shipped_at = ev.at
    if ev.status in FULFILLMENT_DELIVERED and before not in FULFILLMENT_DELIVERED:
        f.delivered_at = ev.at
    for c in ev.cancelled:
        book.edit(book.lines[c.line_id], cancelled=c.qty)
    if ev.cancelled and ev.request_id is None:
        # The store cancelled them (a no-show, a line refused at the counter): their money is released now.
        await money.void_units(book, f"{f.fulfillment_id}:{ev.seq}", ev.cancelled)
    if ev.request_id is not None:
        book.answered[ev.request_id] = book.answered.get(ev.request_id, 0) + 1
    for u in ev.unsourced if ev.status != FS.exception else ():  # a carrier's loss is no node's fault
        line = book.lines[u.line_id]
        if ev.node_id not in line.excluded:
            line.excluded.append(ev.node_id)
    if ev.payment is not None and all(p.payment_id != ev.payment.payment_id for p in book.payments):
        book.payments.append(ev.payment)
        if ev.payment.kind == "capture" and ev.payment.status != "succeeded":
            await money.recapture(book, f, ev.payment)
    if ev.status == FS.received_at_store and before != FS.received_at_store:
        await sourcing.pickup_after_transfer(book, f)
    if before != ev.status:
        if ev.status == FS.shipped:
            await notify(book, "shipped", f"{f.fulfillment_id}:shipped", {"carrier": f.carrier, "tracking": f.tracking})
        elif ev.status == FS.delivered:
            await notify(book, "delivered", f"{f.fulfillment_id}:delivered", {})
    if ev.status == FS.exception and before != FS.exception:
        await exceptions.handle(book, f, ev.unsourced, ev.reason or "lost")
    # Units handed back on the order's own request (a move) are placed by that request.
    elif ev.unsourced and ev.request_id is None and book.phase == OS.released:
        await sourcing.resource(book, f"{ev.status.value} at {ev.node_id}")
    await publish(book)


async def ask_to_drop(book: Book, targets: dict[str, Optional[dict[str, int]]], reason: str,
                      move: bool = False) -> list[str]:
    """Ask fulfillments to drop units (all of them for None) and apply their answers as they come, for at most
    ANSWER_WAIT. A move hands the units back to the order instead of cancelling them. Returns the fulfillments
    that have not answered yet."""
    pending: dict[str, str] = {}
    for fid, lines in targets.items():
        book.ids.cancel += 1
        request_id = f"{book.order_id}:cancel:{book.ids.cancel}"
        req = CancelLines(request_id=request_id, reason=reason, move=move, lines=None if lines is None else [
            LineQty(line_id=k, qty=v) for k, v in lines.items()])
        try:
            await workflow.get_external_workflow_handle(fid).signal(FulfillmentWorkflow.cancel_lines, req)
        except Exception:
            # It finished meanwhile (shipped, rejected, timed out): its last event says what happened.
            book.answered[request_id] = 1
        pending[request_id] = fid
    deadline = workflow.now() + ANSWER_WAIT
    while not all(r in book.answered for r in pending):
        left = (deadline - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(lambda: bool(book.events), timeout=max(left, 0.001),
                                          timeout_summary="fulfillments to answer a cancellation")
        except asyncio.TimeoutError:
            silent = [fid for r, fid in pending.items() if r not in book.answered]
            book.note("cancellation_unanswered", {"fulfillments": silent, "reason": reason})
            return silent
        await apply_all(book)
    return []
