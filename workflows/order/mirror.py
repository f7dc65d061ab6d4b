"""What the outside sees of an order: the read model, the search attributes, its story in the Temporal UI
(story.py), notifications, the query.

The read model gets a snapshot after every step: the header, only the lines and returns that changed since
the last one, and the timeline entries not yet written; idempotent by version, and by the attempt that wrote
(``stamp``): what a discarded attempt of a workflow task wrote gives way to the retry (activities/read_model.py).
"""

from __future__ import annotations

from typing import Any, Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import Notification, OrderSnapshot, OrderState, PlacedOrder, PromiseView
    import workflows.activities as activities
    from workflows.common import AT_RISK, CHANNEL, CUSTOMER_ID, FULFILLMENT_NODES, ORDER_STATUS, PROMISED_BY
    from workflows.order.book import Book
    import workflows.order.story as story


async def notify(book: Book, event: str, key: str, detail: dict[str, Any]) -> None:
    """Tell the customer, once per key (the notifier is idempotent by it)."""
    await activities.notify(Notification(order_id=book.order_id, event=event, key=f"{book.order_id}:{key}",
                                         detail=detail))


def iso(value: Any) -> Optional[str]:
    return value.isoformat() if value is not None else None


def stamp(book: Book) -> int:
    """Which attempt of which workflow task is writing, as a number that only grows: the run, then the history's
    length when the task started. A task Temporal runs again (it refused the completion because a signal came,
    or the worker died) starts on a longer history than its discarded attempt, whose local activities may
    already have written; the read model keeps the higher stamp."""
    return (book.ids.runs << 20) | workflow.info().get_current_history_length()  # a history stays under 2**20 events


async def publish(book: Book, complete: bool = False) -> None:
    """Mirror what changed into the read model (everything when ``complete``), and the search attributes
    support filters on."""
    book.ids.version += 1
    state = header(book)
    if complete:
        book.dirty, book.fresh, book.dirty_returns = set(book.lines), set(book.lines), set(book.returns)
    dirty = [book.lines[l] for l in sorted(book.dirty) if l in book.lines]
    state.lines = [book.line_state(l) for l in dirty if l.line_id in book.fresh]
    known = [l for l in dirty if l.line_id not in book.fresh]
    state.returns = [book.returns[r] for r in sorted(book.dirty_returns)]
    timeline, removed = book.timeline, sorted(book.removed)
    book.timeline, book.dirty, book.fresh, book.removed, book.dirty_returns = [], set(), set(), set(), set()
    now, after = stamp(book), book.ids.stamp
    book.ids.stamp = now
    overwritten = await activities.mirror_order(OrderSnapshot(
        state=state, customer_email=book.order.customer.email, total=book.total_amount(), timeline=timeline,
        created_at=book.created_at or workflow.now(), removed_lines=None if complete else removed,
        line_updates=book.line_updates(known) if known else None, stamp=now, after=after))
    if overwritten:
        # A discarded attempt wrote lines and returns this snapshot does not carry: write them all as they are.
        await publish(book, complete=True)
        return
    _search_attributes(book, state)
    workflow.set_current_details(story.details(book, workflow.now()))  # the order's story in the Temporal UI


def _search_attributes(book: Book, state: OrderState) -> None:
    nodes = sorted({f.node_id for f in book.fulfillments.values()} | {p.node_id for p in book.planned.values()})
    values = [state.status.value, nodes, state.promised_by, state.at_risk]
    if values == book.search_attributes:
        return
    book.search_attributes = values
    updates = [ORDER_STATUS.value_set(state.status.value), CHANNEL.value_set(book.order.channel),
               CUSTOMER_ID.value_set(book.order.customer.id), FULFILLMENT_NODES.value_set(nodes),
               AT_RISK.value_set(state.at_risk)]
    if state.promised_by:
        updates.append(PROMISED_BY.value_set(state.promised_by))
    workflow.upsert_search_attributes(updates)


def header(book: Book) -> OrderState:
    """The order's state without lines, fulfillments, returns and payments (the query adds them all, the mirror
    what changed; fulfillments and payments reach the read model by their own activities)."""
    o = book.order
    return OrderState(
        order_id=o.order_id, external_id=o.external_id, channel=o.channel, customer_id=o.customer.id,
        customer_tier=o.customer.tier, status=book.status(), currency=o.currency, policy=book.policy,
        requested_delivery_date=book.requested_date, lines=[], promised_by=book.promised_by(),
        delivered_at=book.delivered_at(),
        return_deadline=book.return_deadline(), reason=book.reason, version=book.ids.version,
        at_risk=book.at_risk(),
    )


def state(book: Book) -> OrderState:
    s = header(book)
    s.lines = [book.line_state(l) for l in book.lines.values()]
    s.returns = list(book.returns.values())
    s.fulfillments = list(book.fulfillments.values())
    s.payments = list(book.payments)
    return s


def placed(book: Book) -> PlacedOrder:
    """What POST /orders and PATCH answer: the status and the promise, per line."""
    return PlacedOrder(order_id=book.order_id, status=book.status(), promise=PromiseView(
        promised_by=book.promised_by(),
        lines=[{"line_id": l.line_id, "promised_by": iso(l.promised_by)} for l in book.lines.values()],
    ))

