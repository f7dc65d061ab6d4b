"""A carrier's exception on a shipped parcel (lost, damaged, refused, returned to sender): its fulfillment ends as
``exception`` and hands its units back; the order reships them or pays them back, by its policy.

The customer paid for those units when the parcel shipped, so a reshipment charges nothing more: the units are
``prepaid`` on their line, and the fulfillments that carry them next leave them out of their capture (handed back
to the line if those fail in turn). Whatever is not on its way again now (policy refund, a refused parcel, or
nothing has the stock) is cancelled and refunded at once: a customer whose parcel is lost does not wait on a
backorder. A parcel returned to sender comes back to its node's stock, pending inspection.
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import FulfillmentState, LineQty, RestockRequest, ReturnedUnits, cents
    from models.status import OrderStatus as OS
    import workflows.activities as activities
    import workflows.order.money as money
    import workflows.order.sourcing as sourcing
    from workflows.order.book import Book
    from workflows.order.mirror import notify

RESHIPPABLE = ("lost", "damaged")
REASON = "carrier_exception"  # a re-sourcing that is no node's fault: not counted against the reroute limit


async def handle(book: Book, f: FulfillmentState, units: list[LineQty], reason: str) -> None:
    kind = reason.split(":")[0]
    # Every unit of the parcel is paid for (by its own capture, or by a parcel lost before it): what goes out again
    # is on the house.
    for u in units:
        book.lines[u.line_id].prepaid += u.qty
    f.prepaid = {}
    book.note("carrier_exception", {"fulfillment_id": f.fulfillment_id, "node_id": f.node_id, "reason": reason,
                                    **sourcing.listed(units)})
    if kind == "returned_to_sender":
        await activities.restock(RestockRequest(
            order_id=book.order_id, return_id=f"{f.fulfillment_id}-RTS", node_id=f.node_id,
            lines=[ReturnedUnits(line_id=u.line_id, sku=u.sku, qty=u.qty, disposition="pending_inspection")
                   for u in units]))
    reship = book.policy.carrier_exception == "reship" and kind in RESHIPPABLE and book.phase == OS.released
    if reship:
        await sourcing.resource(book, REASON)
    refunded = await refund_unsent(book, f.fulfillment_id, reason)
    await notify(book, "shipment_exception", f"{f.fulfillment_id}:exception", {
        "reason": kind, "reshipped": reship and not refunded, "refunded": str(refunded)})


async def refund_unsent(book: Book, fulfillment_id: str, reason: str) -> Decimal:
    """Paid units no fulfillment carries again are cancelled and their money paid back."""
    gone = []
    for line in book.lines.values():
        n = min(line.open, line.prepaid)
        if n > 0:
            line.prepaid -= n
            book.edit(line, cancelled=n)
            gone.append(LineQty(line_id=line.line_id, sku=line.sku, qty=n))
    if not gone:
        return Decimal("0")
    await sourcing.trim_claims(book)
    amount = cents(sum((book.price(g.line_id) * g.qty for g in gone), Decimal("0")))
    if amount > 0:
        await money.pay(book, money.request(book, "refund", f"{fulfillment_id}:exception:refund", amount,
                                            fulfillment_id=fulfillment_id))
    book.note("refunded", {"fulfillment_id": fulfillment_id, "amount": str(amount), "reason": reason,
                           **sourcing.listed(gone)})
    if book.total.live <= 0:
        book.enter(OS.cancelled, f"carrier exception: {reason}")
    return amount


def give_back_prepaid(book: Book, f: FulfillmentState, kept: dict[str, int]) -> None:
    """A fulfillment carrying paid units failed, or shipped fewer: the rest go back to their lines."""
    for line_id, n in list(f.prepaid.items()):
        back = max(n - kept.get(line_id, 0), 0)
        if back and line_id in book.lines:
            book.lines[line_id].prepaid += back
    f.prepaid = {}
