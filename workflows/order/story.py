"""The order's story as support staff read it in the Temporal UI: a few markdown lines, set as the workflow's
current details after every step (the workflow page, `temporal workflow metadata`): its status, what it waits
for now and its next deadline, and each fulfillment's node, status and next step.

Pure: computed from the book and the workflow's clock, never from I/O; a few dozen lines at most, whatever the
order's size (totals, never a walk over 20,000 lines)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from models.messages import FulfillmentState
from models.status import FULFILLMENT_TERMINAL, FulfillmentKind, FulfillmentStatus as FS, OrderStatus as OS
from workflows.common import when
from workflows.order.book import Book

SHOWN_FULFILLMENTS = 12  # more are summed up in one line
# What a node does next, and the deadline it has for it.
NEXT_STEP = {FS.released: "accept", FS.accepted: "pick", FS.picked: "pack", FS.packed: "ship", FS.shipped: "deliver",
             FS.ready_for_pickup: "hand over", FS.in_transit: "receive"}
# A pickup's next step after picking is making it ready, not packing.
COUNTER_STEP = {FS.picked: "make ready"}


def _next_step(f: FulfillmentState) -> str:
    if f.kind == FulfillmentKind.pickup and f.status in COUNTER_STEP:
        return COUNTER_STEP[f.status]
    return NEXT_STEP.get(f.status, f.status.value)


def next_deadline(book: Book, f: FulfillmentState) -> Optional[tuple[datetime, str]]:
    """A fulfillment's next deadline: acceptance, then the promise's ship-by, then its delivery date."""
    if f.status == FS.released and f.released_at is not None:
        return f.released_at + book.order.windows.accept_timeout, f"{f.node_id} to accept"
    if f.status in (FS.accepted, FS.picked, FS.packed) and f.ship_by is not None:
        return f.ship_by, f"{f.fulfillment_id} to ship"
    if f.status == FS.shipped and f.promised_by is not None:
        return f.promised_by, f"{f.fulfillment_id} to be delivered"
    return None


def waiting_for(book: Book, now: datetime) -> tuple[str, Optional[tuple[datetime, str]]]:
    """What the order waits for, in words, and the deadline that comes first."""
    b = book
    if b.phase == OS.received:
        return "its promise: the catalog check, routing, the reservation and the payment authorization", None
    if b.phase == OS.awaiting_release:
        assert b.release_at is not None
        return (f"the remorse window to end at {when(b.release_at)} (the customer may modify or cancel until then);"
                f" then release to {len(b.planned)} node(s)"), (b.release_at, "release to the nodes")
    if b.phase == OS.released:
        if b.money.hold_since is not None:
            return (f"a renewed payment authorization (on hold since {when(b.money.hold_since)}); what has not shipped"
                    f" is cancelled when the hold ends"), None
        active = [f for f in b.fulfillments.values() if f.status not in FULFILLMENT_TERMINAL]
        deadlines = [d for f in active if (d := next_deadline(b, f)) is not None]
        parts = [", ".join(f"{f.node_id} to {_next_step(f)} {f.fulfillment_id}"
                           for f in active[:3]) + (f" and {len(active) - 3} more" if len(active) > 3 else "")] \
            if active else []
        held = [p.hold_until for p in b.planned.values() if p.hold_until is not None]
        if held:
            parts.append(f"the release day of {len(held)} held fulfillment(s), {when(min(held))}")
            deadlines.append((min(held), "release of held work"))
        if b.total.open:
            parts.append(f"stock for {b.total.open} backordered unit(s) (tried again when stock or supply changes)")
        if parts:
            return "; ".join(parts), min(deadlines) if deadlines else None
    # Every unit delivered, returned or cancelled: the return window.
    deadline = b.return_deadline()
    open_returns = [r for r in b.returns.values() if r.status.value == "requested"]
    if deadline is not None and (now < deadline or open_returns):
        arriving = "".join(f"; return {r.return_id} to arrive at {r.node_id}" for r in open_returns[:3])
        return (f"returns until {when(deadline)}: the return window keeps a delivered order open, then it closes"
                f"{arriving}"), (deadline, "the return window's end")
    return f"nothing: the order is {b.status().value}" + (f" ({b.reason})" if b.reason else ""), None


def details(book: Book, now: datetime) -> str:
    b = book
    status = b.status().value.replace("_", " ")
    head = (f"**{status.capitalize()}** · {b.total.live} unit(s) in {len(b.lines)} line(s) · channel "
            f"{b.order.channel}" + (" · **at risk**" if b.at_risk() else ""))
    waits, deadline = waiting_for(b, now)
    out = [head]
    if (promised := b.promised_by()) is not None:
        out.append(f"Promised by {when(promised)}")
    out.append(f"Waiting for: {waits}")
    if deadline is not None:
        out.append(f"Next deadline: {deadline[1]} by {when(deadline[0])}")
    out.append("")  # markdown: the list below is a list
    shown = list(b.fulfillments.values())[-SHOWN_FULFILLMENTS:]
    for f in shown:
        step = next_deadline(b, f)
        out.append(f"- {f.fulfillment_id} at {f.node_id}: {f.status.value}"
                   + (f" ({f.carrier} {f.tracking})" if f.tracking else "")
                   + (f", {NEXT_STEP[f.status]} by {when(step[0])}" if step else ""))
    if len(b.fulfillments) > len(shown):
        out.append(f"- and {len(b.fulfillments) - len(shown)} earlier fulfillment(s)")
    for p in list(b.planned.values())[:SHOWN_FULFILLMENTS]:
        out.append(f"- {p.fulfillment_id} at {p.node_id}: reserved, "
                   + (f"held until {when(p.hold_until)}" if p.hold_until else "released when the remorse window ends"))
    for r in list(b.returns.values())[-3:]:
        out.append(f"- return {r.return_id} at {r.node_id}: {r.status.value}")
    return "\n".join(out).rstrip()
