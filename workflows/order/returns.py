"""Returns: requested within the window after the last delivery, received at a node (sellable units back on its
shelf, the rest in their own buckets), refunded exactly once."""

from __future__ import annotations

from decimal import Decimal
from typing import Awaitable, Callable, Optional

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        ReceiveIn, RestockRequest, ReturnedUnits, ReturnIn, ReturnLabelRequest, ReturnLineState, ReturnResult,
        ReturnRouteRequest, ReturnState,
    )
    from models.status import ReturnStatus
    import workflows.activities as activities
    from workflows.common import conflict, refusal
    import workflows.order.money as money
    import workflows.order.rules as rules
    from workflows.order.book import Book
    from workflows.order.mirror import notify, publish


async def request(book: Book, body: ReturnIn, exchange_id: Optional[str] = None) -> ReturnResult:
    rules.check_return(book, body, workflow.now())
    book.ids.ret += 1
    return_id = f"{book.order_id}-R{book.ids.ret}"
    node_id = body.node_id or book.node_of(body.lines[0].line_id)
    assert node_id is not None  # something was delivered (check_return)
    if body.node_id is None and body.method == "ship_back" and workflow.patched("return-routes"):
        node_id = await route(book, return_id, node_id, body.lines[0].line_id)
    label = None
    if body.method == "ship_back":
        label = await activities.return_label(ReturnLabelRequest(
            order_id=book.order_id, return_id=return_id, node_id=node_id, units=sum(l.qty for l in body.lines)))
    book.returns[return_id] = ReturnState(
        return_id=return_id, status=ReturnStatus.requested, method=body.method, node_id=node_id, reason=body.reason,
        lines=[ReturnLineState(line_id=l.line_id, qty=l.qty) for l in body.lines], label=label,
        exchange_id=exchange_id)
    book.dirty_returns.add(return_id)
    for l in body.lines:
        line = book.lines[l.line_id]
        line.return_requested += l.qty
    book.note("return_requested", {"return_id": return_id, "node_id": node_id, "reason": body.reason,
                                   "lines": [l.model_dump() for l in body.lines],
                                   **({"exchange_id": exchange_id} if exchange_id else {})})
    if exchange_id is None:  # an exchange publishes once it is whole
        await publish(book)
    return ReturnResult(return_id=return_id, status=ReturnStatus.requested, label=label)


async def route(book: Book, return_id: str, origin: str, line_id: str) -> str:
    """Where the routing rules send a return of what ``origin`` shipped (a drop-ship vendor's: a return centre)."""
    address = book.lines[line_id].delivery.address
    answer = await activities.return_destination(ReturnRouteRequest(
        order_id=book.order_id, origin_node_id=origin, postal_code=address.postal_code if address else None,
        lat=address.lat if address else None, lon=address.lon if address else None))
    book.note("return_routed", {"return_id": return_id, "from_node_id": origin, "node_id": answer.node_id,
                                "rule": answer.rule, "why": answer.why, "rules_version": answer.rules_version})
    return answer.node_id


def result(book: Book, return_id: str) -> ReturnResult:
    """A return as it stands."""
    r = book.returns[return_id]
    return ReturnResult(return_id=return_id, status=r.status, label=r.label, refund_amount=r.refund_amount)


async def receive(book: Book, return_id: str, body: ReceiveIn,
                  settle_exchange: Optional[Callable[[Book, str], Awaitable[None]]] = None) -> ReturnResult:
    r = book.returns[return_id]
    if not rules.check_receive(book, return_id, body):
        return result(book, return_id)
    got = {l.line_id: l for l in body.lines}
    restock = [ReturnedUnits(line_id=rl.line_id, sku=book.lines[rl.line_id].sku, qty=got[rl.line_id].qty,
                             disposition=got[rl.line_id].disposition)
               for rl in r.lines if rl.line_id in got and got[rl.line_id].qty]
    if restock:
        try:
            await activities.restock(RestockRequest(order_id=book.order_id, return_id=return_id, node_id=r.node_id,
                                                    lines=restock))
        except (ActivityError, ApplicationError) as e:
            # The node cannot take the units (it is not in the network): nothing was received, the caller hears why.
            why = refusal(e)
            if why is None:
                raise
            raise conflict(f"return {return_id} cannot be received at {r.node_id}: {why}") from None
    for rl in r.lines:
        g = got.get(rl.line_id)
        rl.received_qty, rl.disposition = (g.qty, g.disposition) if g else (0, None)
        if rl.received_qty:
            book.edit(book.lines[rl.line_id], returned=rl.received_qty)
    r.status = ReturnStatus.received
    book.note("return_received", {"return_id": return_id, "lines": [rl.model_dump() for rl in r.lines]})
    if r.exchange_id and settle_exchange is not None:
        await settle_exchange(book, return_id)  # its units paid for a replacement: only a difference is refunded
    else:
        amount = sum((book.lines[rl.line_id].unit_price * rl.received_qty for rl in r.lines), Decimal("0"))
        await refund(book, return_id, amount)
        r.refund_amount, r.status = amount, ReturnStatus.refunded
    book.dirty_returns.add(return_id)
    await publish(book)
    return ReturnResult(return_id=return_id, status=r.status, label=r.label, refund_amount=r.refund_amount)


async def refund(book: Book, return_id: str, amount: Decimal, **detail: str) -> None:
    """Pay the customer back for a return (nothing to pay back: they are told all the same)."""
    if amount > 0:
        await money.refund(book, return_id, amount)
    book.note("refunded", {"return_id": return_id, "amount": str(amount), **detail})
    await notify(book, "refunded", f"{return_id}:refunded", {"amount": str(amount)})


def open_returns(book: Book) -> bool:
    """A return still awaited (not one whose exchange closed without it: charged, or called off)."""
    return any(r.status == ReturnStatus.requested and not (
        r.exchange_id and book.exchanges[r.exchange_id].status in ("charged", "void")) for r in book.returns.values())
