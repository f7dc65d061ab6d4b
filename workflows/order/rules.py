"""What may be asked of an order, and what a modification makes of its lines: pure functions of the book.

Each check raises ``conflict`` (not now: 409) or ``invalid`` (not like this: 422) and changes nothing, so an
Update's validator and its handler run the same rule; unit-tested without Temporal (tests/unit/test_order_rules.py).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import CancelIn, Delivery, ExchangeIn, ModifyIn, ReceiveIn, ReorchestrateIn, ReturnIn, ReturnLineIn
    from models.status import (
        COUNTER_METHODS, FULFILLMENT_FAILED, FulfillmentStatus as FS, OrderStatus as OS, ReturnStatus,
    )
    from workflows.common import check_within, conflict, invalid
    from workflows.order.book import Book, Line

MOVABLE = (FS.released, FS.accepted)


def check_modifiable(book: Book) -> None:
    if book.phase != OS.awaiting_release:
        raise conflict(f"order is {book.status().value}: it can only be modified in the remorse window")


def check_modify(book: Book, body: ModifyIn) -> None:
    """The Update's validator: a change in the remorse window, or a B2B change after release."""
    if book.phase == OS.released:
        check_released_change(book, body)
        return
    check_modifiable(book)
    if body.lines is None and body.address is None and body.policy is None and body.requested_delivery_date is None:
        raise invalid("nothing to modify: give lines, address, policy or requested_delivery_date")
    if body.lines is not None:
        ids = [l.line_id for l in body.lines if l.line_id]
        if len(ids) != len(set(ids)):
            raise invalid("line ids must be unique")


def check_released_change(book: Book, body: ModifyIn) -> dict[str, int]:
    """A B2B order may change quantities and its date after release: the new ordered quantity per line
    (cancelled units included, so the difference is what to add or cancel)."""
    if not book.is_b2b() or book.money.settled:
        raise conflict(f"order is {book.status().value}: it can only be modified in the remorse window")
    if body.address is not None or body.policy is not None:
        raise conflict("after release a B2B order changes only line quantities and requested_delivery_date")
    if body.lines is None and body.requested_delivery_date is None:
        raise invalid("nothing to change: give lines or requested_delivery_date")
    qty: dict[str, int] = {}
    for m in body.lines or []:
        line = book.lines.get(m.line_id or "")
        if line is None or line.sku != m.sku:
            raise conflict("after release lines keep their line_id and sku; only qty changes")
        if m.uom != line.uom:
            raise conflict(f"line {line.line_id} is ordered by the {line.uom}: change its qty in that unit")
        if m.line_id in qty:
            raise invalid(f"line {m.line_id} appears twice")
        if m.qty < line.shipped:
            raise conflict(f"line {line.line_id}: {line.shipped} units have shipped already")
        qty[line.line_id] = m.qty + line.cancelled
    return qty


def check_cancellable(book: Book, body: CancelIn) -> dict[str, int]:
    """Units to cancel per line: everything not yet shipped, or what the body names."""
    status = book.status()
    if book.phase in (OS.received, OS.cancelled, OS.rejected) or status in (
            OS.delivered, OS.returned, OS.partially_returned, OS.shipped):
        raise conflict(f"order is {status.value}: nothing left to cancel")
    if book.phase == OS.released and book.money.settled:
        raise conflict("order is closed")
    named = None if body.lines is None else {c.line_id: c.qty for c in body.lines}
    if named is not None:
        if len(named) != len(body.lines or []):
            raise invalid("a line appears twice")
        for line_id in named:
            if line_id not in book.lines:
                raise invalid(f"unknown line {line_id}")
    want: dict[str, int] = {}
    for line_id, line in book.lines.items():
        if named is not None and line_id not in named:
            continue
        can = line.live - line.shipped
        asked = named.get(line_id) if named is not None else None
        if named is not None and can <= 0:
            raise conflict(f"line {line_id} has already shipped or is cancelled")
        if asked is not None and asked > can:
            raise conflict(f"line {line_id}: only {can} units can still be cancelled")
        if can > 0:
            want[line_id] = asked if asked is not None else can
    if not want:
        raise conflict("nothing left to cancel: every unit has shipped or is cancelled")
    return want


def check_reorchestrate(book: Book, body: ReorchestrateIn, refuse_moved: bool = True) -> None:
    if book.phase != OS.released or book.money.settled:
        raise conflict(f"order is {book.status().value}: only released orders can be reorchestrated")
    if body.fulfillment_id:
        f = book.fulfillments.get(body.fulfillment_id)
        if f is None:
            raise invalid(f"unknown fulfillment {body.fulfillment_id}")
        if f.status not in MOVABLE and f.status not in FULFILLMENT_FAILED:
            raise conflict(f"fulfillment {f.fulfillment_id} is {f.status.value}: too late to move it")
        if refuse_moved and f.status in FULFILLMENT_FAILED and book.total.open == 0:
            # Moved already (a reroute or an earlier reorchestrate): a repeat would only add to the timeline.
            raise conflict(f"fulfillment {f.fulfillment_id} is {f.status.value} and every unit of the order is with a"
                           f" node already: nothing to move")
    elif book.total.open == 0:
        raise conflict("nothing to reorchestrate: every unit is with a node")


def check_return(book: Book, body: ReturnIn, now: datetime) -> None:
    digital = sorted({l.line_id for l in body.lines if l.line_id in book.lines and book.lines[l.line_id].digital})
    if digital:
        raise conflict(f"digital lines cannot be returned: {', '.join(digital)}")
    deadline = book.return_deadline()
    if deadline is None:
        raise conflict("nothing has been delivered yet")
    if now > deadline:
        raise conflict(f"the return window closed at {deadline.isoformat()}")
    if body.method == "in_store" and not body.node_id:
        raise invalid("an in-store return needs node_id")
    seen = set()
    for l in body.lines:
        line = book.lines.get(l.line_id)
        if line is None:
            raise invalid(f"unknown line {l.line_id}")
        if l.line_id in seen:
            raise invalid(f"line {l.line_id} appears twice")
        seen.add(l.line_id)
        can = line.delivered - line.return_requested
        if l.qty > can:
            raise conflict(f"line {l.line_id}: only {max(can, 0)} delivered units can be returned")


def check_exchange(book: Book, body: ExchangeIn, now: datetime) -> None:
    """An exchange returns delivered units (the return's own rules) for replacements the catalog has."""
    check_return(book, ReturnIn(lines=[ReturnLineIn(line_id=l.line_id, qty=l.qty) for l in body.lines],
                                reason=body.reason, method=body.method, node_id=body.node_id), now)
    for l in body.lines:
        if book.lines[l.line_id].digital:
            raise conflict(f"digital lines cannot be exchanged: {l.line_id}")


def check_receive(book: Book, return_id: str, body: ReceiveIn) -> bool:
    """True if the return is to be received now; False if it was already (the refund went out once)."""
    r = book.returns.get(return_id)
    if r is None:
        raise invalid(f"unknown return {return_id}")
    if r.status != ReturnStatus.requested:
        return False
    check_within({rl.line_id: rl.qty for rl in r.lines}, body.lines, f"return {return_id}", "received", "returned")
    return True


def modified_lines(book: Book, body: ModifyIn) -> list[Line]:
    """The order's lines as the modification makes them (sourced afresh: no promise, nothing held)."""
    if body.lines is None:
        lines = [Line(line_id=l.line_id, sku=l.sku, qty=l.qty, unit_price=l.unit_price, delivery=l.delivery,
                      uom=l.uom, pack=l.pack, backorder=l.backorder) for l in book.lines.values()]
    else:
        lines, used, n = [], {l.line_id for l in body.lines if l.line_id}, 0
        first = next(iter(book.lines.values())).delivery
        for m in body.lines:
            line_id = m.line_id
            if not line_id:
                n += 1
                while f"L{n}" in used or f"L{n}" in book.lines:
                    n += 1
                line_id = f"L{n}"
                used.add(line_id)
            old = book.lines.get(line_id)
            delivery = m.delivery or (old.delivery if old else first)
            lines.append(Line(line_id=line_id, sku=m.sku, qty=m.qty, unit_price=m.unit_price, delivery=delivery,
                              uom=m.uom, pack=m.pack, backorder=m.backorder))
    if body.address is not None:
        for l in lines:
            if l.delivery.method not in COUNTER_METHODS:
                l.delivery = Delivery(method=l.delivery.method, address=body.address)
    return lines
