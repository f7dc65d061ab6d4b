"""Exchanges: delivered units come back (a return) and others go out (a replacement order), linked both ways.

On the original order: the exchange's return, then its settling when the units arrive (a price difference
refunded, or a shortfall charged) or when they never do by ``due_by`` (an advance exchange's replacement is
charged; a waiting one is called off). The replacement is an order of its own (workflow id ``{order}-X{n}``,
started by an activity, not as a child: its own clock and life): sourced, promised and reserved like any order,
paid up to the returned units' value by them (``ExchangeOf.credits``), released at once (advance) or when the
return arrives (even). The two tell each other by signals.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        ExchangeIn, ExchangeOf, ExchangeResult, ExchangeState, Line, OrderInput, PlanLine, PlanRequest,
        ReturnIn, ReturnLineIn,
    )
    from models.status import ReturnStatus
    import workflows.activities as activities
    from workflows.common import conflict
    import workflows.order.money as money
    import workflows.order.returns as returns
    import workflows.order.rules as rules
    from workflows.order.book import Book
    from workflows.order.mirror import notify, publish

ZERO = Decimal("0")


# ---------------------------------------------------------------- on the original order
async def request(book: Book, body: ExchangeIn) -> ExchangeResult:
    rules.check_exchange(book, body, workflow.now())
    n = book.ids.exchange + 1
    replacement = replacement_order(book, body, n, "")
    # Only what can be served becomes an exchange: nothing is returned for a replacement no node holds.
    plan = await activities.plan(PlanRequest(
        order_id=replacement.order_id, channel=replacement.channel, customer_tier=replacement.customer.tier,
        lines=[PlanLine(line_id=l.line_id, sku=l.sku, qty=l.qty, delivery=l.delivery) for l in replacement.lines],
        policy=replacement.policy, at=workflow.now()))
    if not plan.feasible or plan.unfilled:
        raise conflict(f"the replacement cannot be served now: {plan.reason or 'not enough stock'}")
    book.ids.exchange = n
    exchange_id = f"{book.order_id}-EX{n}"
    ret = await returns.request(book, ReturnIn(
        lines=[ReturnLineIn(line_id=l.line_id, qty=l.qty) for l in body.lines], reason=body.reason,
        method=body.method, node_id=body.node_id), exchange_id=exchange_id)
    replacement = replacement_order(book, body, n, ret.return_id)
    x = ExchangeState(
        exchange_id=exchange_id, return_id=ret.return_id, replacement_order_id=replacement.order_id,
        advance=body.advance, due_by=workflow.now() + book.order.windows.return_window,
        lines=[{"line_id": l.line_id, "qty": l.qty, "sku": r.sku, "unit_price": str(r.unit_price)}
               for l, r in zip(body.lines, replacement.lines)])
    book.exchanges[exchange_id] = x
    await activities.start_replacement(replacement)
    book.note("exchange_requested", {
        "exchange_id": exchange_id, "return_id": ret.return_id, "replacement_order_id": replacement.order_id,
        "advance": body.advance, "due_by": x.due_by.isoformat(), "lines": x.lines})
    await publish(book)
    return ExchangeResult(exchange_id=exchange_id, return_id=ret.return_id,
                          replacement_order_id=replacement.order_id, label=ret.label)


def replacement_order(book: Book, body: ExchangeIn, n: int, return_id: str) -> OrderInput:
    o = book.order
    lines, credits = [], {}
    for i, l in enumerate(body.lines, 1):
        original = book.lines[l.line_id]
        line_id = f"L{i}"
        price = original.unit_price if l.unit_price is None else l.unit_price
        lines.append(Line(line_id=line_id, sku=l.sku, qty=l.qty, unit_price=price, delivery=original.delivery))
        credits[line_id] = min(book.price(l.line_id), price)  # what the returned unit paid, up to its new price
    return OrderInput(
        order_id=f"{book.order_id}-X{n}", external_id=f"{o.external_id}:exchange:{n}", channel=o.channel,
        customer=o.customer, lines=lines, policy=book.policy, currency=o.currency,
        windows=o.windows.model_copy(update={"remorse": timedelta(0)}),
        exchange_of=ExchangeOf(order_id=book.order_id, exchange_id=f"{book.order_id}-EX{n}", return_id=return_id,
                               advance=body.advance, credits=credits))


async def returned(book: Book, return_id: str) -> None:
    """The exchange's units arrived (after returns.receive): settle the difference and free the replacement."""
    r = book.returns[return_id]
    x = book.exchanges[r.exchange_id or ""]
    back = sum((book.price(rl.line_id) * rl.received_qty for rl in r.lines), ZERO)
    if x.status != "open":
        # Failed or called off (the replacement never went out), or charged already: a plain return, refunded
        # whole.
        amount = back
    else:
        amount = back - used(book, x)
        x.status = "returned"
        await tell_replacement(book, x, "exchange_returned")
    x.settled_amount = amount
    if amount > 0:
        await returns.refund(book, return_id, amount, exchange_id=x.exchange_id)
    elif amount < 0:
        await charge(book, x, -amount, "fewer units came back than the replacement was paid with")
    r.refund_amount, r.status = max(amount, ZERO), ReturnStatus.refunded
    book.note("exchange_returned", {"exchange_id": x.exchange_id, "return_id": return_id,
                                    "replacement_order_id": x.replacement_order_id, "settled": str(amount)})


def used(book: Book, x: ExchangeState) -> Decimal:
    """What the returned units pay on the replacement (its credits)."""
    return sum((min(book.price(l["line_id"]), Decimal(l["unit_price"])) * l["qty"] for l in x.lines), ZERO)


async def charge(book: Book, x: ExchangeState, amount: Decimal, why: str) -> None:
    """Charge the customer on this order: an authorization of its own, captured at once (the order's own
    authorization was settled when it delivered)."""
    key = f"{x.exchange_id}:charge"
    auth = await money.pay(book, money.request(book, "authorization", f"{key}:auth", amount))
    ok = auth.status == "succeeded"
    if ok:
        cap = await money.pay(book, money.request(book, "capture", key, amount, authorization=auth.payment_id))
        ok = cap.status == "succeeded"
    x.settled_amount = -amount
    book.note("exchange_charged" if ok else "payment_failed", {
        "exchange_id": x.exchange_id, "amount": str(amount), "why": why if ok else f"{why}; the charge was declined"})
    await notify(book, "exchange_charged", f"{x.exchange_id}:charged",
                 {"amount": str(amount), "exchange_id": x.exchange_id, "succeeded": ok})


async def expire_due(book: Book) -> bool:
    """Exchanges whose units did not come back in time: True if any closed now."""
    now, closed = workflow.now(), False
    for x in book.exchanges.values():
        if x.status != "open" or now < x.due_by:
            continue
        closed = True
        if x.advance:
            x.status = "charged"
            await charge(book, x, used(book, x), "the exchanged units never came back")
        else:
            x.status = "void"
            book.note("exchange_void", {"exchange_id": x.exchange_id, "replacement_order_id": x.replacement_order_id,
                                        "why": "the exchanged units never came back"})
            await tell_replacement(book, x, "exchange_void")
    if closed:
        await publish(book)
    return closed


def next_due(book: Book):
    return min((x.due_by for x in book.exchanges.values() if x.status == "open"), default=None)


async def failed(book: Book, exchange_id: str, why: str) -> None:
    """The replacement could not be placed after all: the return goes on as a plain one (refunded whole)."""
    x = book.exchanges.get(exchange_id)
    if x is None or x.status != "open":
        return
    x.status = "failed"
    book.note("exchange_failed", {"exchange_id": exchange_id, "replacement_order_id": x.replacement_order_id,
                                  "why": why})
    await publish(book)


async def tell_replacement(book: Book, x: ExchangeState, signal: str) -> None:
    try:
        await workflow.get_external_workflow_handle(x.replacement_order_id).signal(signal)
    except FailureError:  # as the server reports a signal it could not deliver
        pass  # it has closed (cancelled for good): nothing waits to hear


# ---------------------------------------------------------------- on the replacement order
async def tell_original(book: Book, signal: str, *args: str) -> None:
    ex = book.order.exchange_of
    assert ex is not None
    try:
        await workflow.get_external_workflow_handle(ex.order_id).signal(signal, args=[ex.exchange_id, *args])
    except FailureError:  # as the server reports a signal it could not deliver
        pass
