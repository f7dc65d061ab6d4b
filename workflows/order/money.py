"""The order's money: authorize (first, so a decline changes nothing), keep the authorization alive while the
order waits, capture what ships, void what never will, refund what comes back.

Every gateway call carries an idempotency key made of the order's own ids, so a replayed or retried call is
answered once. A card authorization expires at the gateway (Windows.authorization_validity, 7 days): an order
that waits longer (a backorder, a preorder, a B2B date) authorizes again before it is released to a node; a
decline then holds the order for the payment (the customer is told) and cancels what is unshipped after
Windows.payment_hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.status import OrderStatus as OS
    from models.messages import CreditCheck, FulfillmentState, LineQty, PaymentRecord, PaymentRequest, cents
    import workflows.activities as activities
    from workflows.order.book import Book, Money
    from workflows.order.mirror import notify

# A node needs about this long from release to shipment: an authorization this close to expiring is renewed.
RELEASE_MARGIN = timedelta(days=1)


def request(book: Book, kind: str, key: str, amount: Decimal, **kw) -> PaymentRequest:
    account = on_account(book)
    if kind == "capture" and account:
        kind = "invoice"
    return PaymentRequest(order_id=book.order_id, idempotency_key=key, kind=kind, amount=amount,
                          currency=book.order.currency, at=workflow.now(), on_account=account, **kw)


async def pay(book: Book, req: PaymentRequest) -> PaymentRecord:
    record = await activities.payment(req)
    book.payments.append(record)
    return record


def on_account(book: Book) -> bool:
    """The customer buys on account (customer.account): invoiced per shipment, nothing authorized at a gateway."""
    return book.order.customer.account is not None


CHARGED = ("capture", "invoice")


def captured(book: Book) -> Decimal:
    return sum((p.amount for p in book.payments if p.kind in CHARGED and p.status == "succeeded"), Decimal("0"))


async def credit_check(book: Book, amount: Decimal) -> Optional[str]:
    """An order on account: why it needs an approver (the credit limit), or None."""
    account = book.order.customer.account
    assert account is not None
    verdict = await activities.credit_check(CreditCheck(order_id=book.order_id, customer_id=book.order.customer.id,
                                                        amount=cents(amount), credit_limit=account.credit_limit,
                                                        at=workflow.now()))
    book.note("credit_checked", {"ok": verdict.ok, "open_balance": str(verdict.open_balance),
                                 "amount": str(cents(amount)), "credit_limit": str(account.credit_limit),
                                 "terms": account.terms})
    return None if verdict.ok else verdict.reason


async def authorize(book: Book, amount: Decimal) -> bool:
    """A new authorization for ``amount``; on a decline the one in force stays as it was."""
    m = book.money
    m.rounds += 1
    amount = cents(amount)
    if on_account(book):
        # Invoiced on its terms, never card-authorized: the amount is what it may invoice. Placement checks the
        # credit limit itself (over it, the order waits for an approver); a change that raises the total must fit.
        if book.phase != OS.received and amount > m.authorized and (why := await credit_check(book, amount)):
            book.note("payment_declined", {"amount": str(amount), "reason": why})
            return False
        m.authorized, m.authorization, m.authorized_at, m.captured_before = amount, None, None, captured(book)
        return True
    key = f"{book.order_id}:auth:{m.rounds}"
    record = await pay(book, request(book, "authorization", key, amount))
    if record.status != "succeeded":
        book.note("payment_declined", {"amount": str(amount)})
        return False
    m.authorized, m.authorization, m.authorized_at = amount, key, workflow.now()
    m.captured_before = captured(book)
    book.note("payment_authorized", {"amount": str(amount)})
    return True


@dataclass
class Superseded:
    """The authorization a new one replaced: voided once the change it paid for holds, else back in force."""

    money: Money
    round: int


async def authorize_instead(book: Book, amount: Decimal) -> Optional[Superseded]:
    """Authorize ``amount`` in place of the authorization in force; None if declined (nothing changed)."""
    old = replace(book.money)
    if not await authorize(book, amount):
        return None
    return Superseded(old, old.rounds)


async def void_superseded(book: Book, old: Superseded) -> None:
    if old.money.authorization is not None and old.money.authorized > 0:
        await pay(book, request(book, "void", f"{book.order_id}:void:{old.round}", old.money.authorized,
                                authorization=old.money.authorization))


async def restore(book: Book, old: Superseded) -> None:
    """The change did not hold: void the new authorization and put the old one back in force."""
    new = book.money
    if new.authorization is not None:
        await pay(book, request(book, "void", f"{book.order_id}:void:{new.rounds}", new.authorized,
                                authorization=new.authorization))
    book.money = replace(old.money, rounds=new.rounds, captures=new.captures)


async def reauthorize(book: Book, amount: Decimal) -> bool:
    """Authorize the new amount, then void the old authorization: a decline leaves everything as it was."""
    old = await authorize_instead(book, amount)
    if old is None:
        return False
    await void_superseded(book, old)
    return True


def remaining(book: Book) -> Decimal:
    """What the authorization in force can still capture."""
    return book.money.authorized - (captured(book) - book.money.captured_before)


def uncaptured(book: Book) -> Decimal:
    return max(book.total_amount() - captured(book), Decimal("0"))


def expiring(book: Book) -> bool:
    at = book.money.authorized_at
    return at is not None and workflow.now() + RELEASE_MARGIN - at >= book.order.windows.authorization_validity


async def keep_alive(book: Book) -> bool:
    """Before work goes to a node: renew an authorization that would expire before the shipment is captured.
    False while the payment is on hold (declined)."""
    if book.money.hold_since is None and not expiring(book):
        return True
    amount = uncaptured(book)
    if amount <= 0 or await reauthorize(book, amount):
        if book.money.hold_since is not None:
            book.note("payment_hold_released", {})
        book.money.hold_since = None
        return True
    if book.money.hold_since is None:
        book.money.hold_since = workflow.now()
        until = workflow.now() + book.order.windows.payment_hold
        book.note("payment_hold", {"reason": "the renewed authorization was declined", "until": until.isoformat()})
        await notify(book, "payment_required", f"payment_required:{book.money.rounds}",
                     {"amount": str(amount), "until": until.isoformat()})
    return False


def hold_ends(book: Book):
    since = book.money.hold_since
    return None if since is None else since + book.order.windows.payment_hold


async def recapture(book: Book, f: FulfillmentState, failed: PaymentRecord) -> None:
    """A shipment's capture was refused (the authorization had expired): authorize what is left to capture
    again, then capture the shipment."""
    book.money.captures += 1
    n = book.money.captures
    if await reauthorize(book, uncaptured(book)):
        record = await pay(book, request(book, "capture", f"{f.fulfillment_id}:capture:{n}", failed.amount,
                                         fulfillment_id=f.fulfillment_id, authorization=book.money.authorization))
        if record.status == "succeeded":
            return
    book.note("payment_failed", {"fulfillment_id": f.fulfillment_id, "amount": str(failed.amount),
                                 "why": "the shipment's capture and a new authorization were both declined"})


async def capture_digital(book: Book, amount: Decimal) -> None:
    await pay(book, request(book, "capture", f"{book.order_id}:digital:capture", amount,
                            authorization=book.money.authorization))


async def refund(book: Book, return_id: str, amount: Decimal) -> None:
    await pay(book, request(book, "refund", f"{return_id}:refund", amount, return_id=return_id))


async def void_units(book: Book, key: str, units: list[LineQty]) -> None:
    """Release the authorized money of units cancelled for good (at most what the authorization still holds)."""
    m = book.money
    amount = min(cents(sum((book.price(u.line_id) * u.qty for u in units), Decimal("0"))), remaining(book))
    if m.settled or m.authorization is None or amount <= 0:
        return
    record = await pay(book, request(book, "void", f"{key}:void", amount, authorization=m.authorization))
    if record.status == "succeeded":
        m.authorized -= amount
        book.note("payment_voided", {"amount": str(amount), "lines": sorted({u.line_id for u in units})})


async def settle(book: Book) -> Optional[Decimal]:
    """Void what was authorized and never captured, once the order can capture no more."""
    m = book.money
    if m.settled or m.authorized <= 0:
        return None
    m.settled = True
    if m.authorization is None:
        return None  # on account: nothing was authorized
    remainder = remaining(book)
    if remainder <= 0:
        return None
    await pay(book, request(book, "void", f"{book.order_id}:void:{m.rounds}", remainder, authorization=m.authorization))
    book.note("payment_voided", {"amount": str(remainder)})
    return remainder
