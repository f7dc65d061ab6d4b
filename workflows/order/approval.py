"""Approval: a B2B buyer's order (policy.approval_required) is placed, promised and reserved, then waits for an
approver of the buyer (a client key of its channel flagged approver, or support) before its remorse window
starts; declined, or not approved within Windows.approval, it is cancelled and its stock released."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import ApproveIn, CancelIn, DeclineIn
    from models.status import OrderStatus as OS
    import workflows.order.changes as changes
    from workflows.common import conflict
    from workflows.order.book import Book
    from workflows.order.mirror import iso, notify, publish


async def request(book: Book, reason: str) -> None:
    """Just placed: hold it for approval (the caller tells the customer and mirrors it)."""
    book.approval_until = workflow.now() + book.order.windows.approval
    book.enter(OS.awaiting_approval, reason)
    book.note("approval_requested", {"until": iso(book.approval_until), "promised_by": iso(book.promised_by()),
                                     "reason": reason})


def check(book: Book) -> None:
    if book.phase != OS.awaiting_approval:
        raise conflict(f"order is {book.status().value}: it is not awaiting approval")


async def approve(book: Book, body: ApproveIn) -> None:
    check(book)
    book.release_at = workflow.now() + book.order.windows.remorse
    book.reason = None  # the hold's reason no longer holds
    book.enter(OS.awaiting_release)
    book.note("approved", {"by": body.by, "note": body.note})
    book.note("awaiting_release", {"until": iso(book.release_at), "promised_by": iso(book.promised_by())})
    await notify(book, "approved", "approved", {"promised_by": iso(book.promised_by())})
    await publish(book)


async def decline(book: Book, body: DeclineIn) -> None:
    check(book)
    book.note("declined", {"by": body.by, "reason": body.reason})
    await changes.cancel(book, CancelIn(reason=f"declined: {body.reason}"))


async def expire(book: Book) -> None:
    if book.phase != OS.awaiting_approval:
        return
    book.note("approval_expired", {"until": iso(book.approval_until)})
    await changes.cancel(book, CancelIn(reason=f"not approved within {book.order.windows.approval}"))
