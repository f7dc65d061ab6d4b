"""Changes asked of an order: modify in the remorse window, a B2B change after release, cancel, reorchestrate.

Money first: a change that costs more is authorized before anything moves, so a declined card changes
nothing (409 "declined"); a change that cannot be sourced puts the old authorization back in force.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import CancelIn, ModifyIn, Policy, ReorchestrateIn
    from models.status import FULFILLMENT_FAILED, FULFILLMENT_UNSHIPPED, OrderStatus as OS
    import workflows.activities as activities
    from workflows.common import conflict
    import workflows.order.money as money
    import workflows.order.rules as rules
    import workflows.order.sourcing as sourcing
    from workflows.order.book import Book, Line
    from workflows.order.events import ask_to_drop
    from workflows.order.mirror import notify, publish

DECLINED = "payment for the changed order was declined: nothing was changed"


# ---------------------------------------------------------------- modify in the remorse window
async def modify(book: Book, body: ModifyIn) -> None:
    if book.phase == OS.released:
        await change_released(book, body)
        return
    rules.check_modify(book, body)
    new_lines = rules.modified_lines(book, body)
    total = sum((l.unit_price * l.qty for l in new_lines), Decimal("0"))
    superseded = None
    if total > book.money.authorized:
        superseded = await money.authorize_instead(book, total)
        if superseded is None:
            await publish(book)
            raise conflict(DECLINED)
    old_lines, old_policy, old_date = list(book.lines.values()), book.policy, book.requested_date
    with_claims = [l.line_id for l in old_lines if l.claims]
    await sourcing.release_planned(book, "modified")
    if body.requested_delivery_date is not None:
        book.requested_date = body.requested_delivery_date
    _replace_lines(book, new_lines)
    book.policy = body.policy or book.policy
    plan = await sourcing.source(book, {l.line_id: l.open for l in book.lines.values()}, book.policy,
                                 reason="modified", release_now=False)
    if plan is None or not plan.feasible:
        # Put the order back as it was; the caller hears why.
        book.policy, book.requested_date = old_policy, old_date
        _replace_lines(book, [_fresh(l) for l in old_lines])
        await sourcing.source(book, {l.line_id: l.open for l in book.lines.values()}, book.policy,
                              reason="modification_reverted", release_now=False)
        if superseded is not None:
            await money.restore(book, superseded)
        await publish(book)
        raise conflict(f"modification cannot be fulfilled: {plan.reason if plan else 'nothing to source'}")
    if superseded is not None:
        await money.void_superseded(book, superseded)
    await sourcing.trim_claims(book, gone=[l for l in with_claims if l not in book.lines])
    book.note("modified", {"lines": len(book.lines), "promised_by": _iso(book.promised_by())})
    await publish(book)


def _fresh(line: Line) -> Line:
    """The line as ordered, to be sourced afresh."""
    return Line(line_id=line.line_id, sku=line.sku, qty=line.qty, unit_price=line.unit_price, delivery=line.delivery,
                claims=line.claims, uom=line.uom, pack=line.pack, backorder=line.backorder)


def _replace_lines(book: Book, lines: list[Line]) -> None:
    for line_id in list(book.lines):
        book.remove_line(line_id)
    for line in lines:
        book.add_line(line)


def _iso(d: Optional[datetime]) -> Optional[str]:
    return d.isoformat() if d else None


# ---------------------------------------------------------------- a B2B order changed after release
async def change_released(book: Book, body: ModifyIn) -> None:
    """Fewer units are cancelled, more are sourced, a new date moves every unit not yet shipped; each changed
    line is promised again."""
    qty = rules.check_released_change(book, body)
    before = {l.line_id: l.promised_by for l in book.lines.values()}
    fewer = {k: book.lines[k].qty - q for k, q in qty.items() if q < book.lines[k].qty}
    more = {k: q - book.lines[k].qty for k, q in qty.items() if q > book.lines[k].qty}
    delta = sum((book.lines[k].unit_price * n for k, n in more.items()), Decimal("0")) - sum(
        (book.lines[k].unit_price * n for k, n in fewer.items()), Decimal("0"))
    need = money.uncaptured(book) + delta
    superseded = None
    if need > money.remaining(book):
        superseded = await money.authorize_instead(book, need)
        if superseded is None:
            await publish(book)
            raise conflict(DECLINED)
        await money.void_superseded(book, superseded)
    if fewer:
        await cancel_units(book, fewer, "b2b change")
    for line_id, n in more.items():
        book.edit(book.lines[line_id], qty=n)
    moved = body.requested_delivery_date is not None and body.requested_delivery_date != book.requested_date
    if moved:
        book.requested_date = body.requested_delivery_date
        await sourcing.release_planned(book, "b2b change")
        unshipped = {f.fulfillment_id: None for f in book.fulfillments.values() if f.status in FULFILLMENT_UNSHIPPED}
        if unshipped:
            excluded = {k: list(l.excluded) for k, l in book.lines.items()}
            await ask_to_drop(book, unshipped, "b2b date change", move=True)
            for k, nodes in excluded.items():  # moved for the date, not failed: the same nodes may serve again
                book.lines[k].excluded = nodes
    held = book.holders()
    for line_id in set(more) | (set(book.lines) if moved else set()):
        line = book.lines[line_id]
        line.promised_by = max(held.get(line_id, []), default=None)  # promised again from what still holds it
        book.touch(line)
    book.note("modified_after_release", {
        "lines": [{"line_id": k, "qty": book.lines[k].live} for k in qty],
        "requested_delivery_date": book.requested_date.isoformat() if book.requested_date else None})
    await sourcing.resource(book, "b2b_change", promised_before=before)
    await publish(book)


# ---------------------------------------------------------------- cancel
async def cancel(book: Book, body: CancelIn) -> None:
    want = rules.check_cancellable(book, body)
    await cancel_units(book, dict(want), body.reason)
    everything = book.total.live <= 0
    book.note("cancelled" if everything else "lines_cancelled",
              {"reason": body.reason, "lines": [{"line_id": k, "qty": v} for k, v in want.items()]})
    if everything:
        book.enter(OS.cancelled, body.reason)
        await money.settle(book)
        await notify(book, "cancelled", "cancelled", {"reason": body.reason})
    await publish(book)


async def cancel_units(book: Book, want: dict[str, int], reason: str) -> None:
    """Units nobody holds go first, then those reserved and not yet at a node (remorse window, release days),
    then unshipped fulfillments, newest first (they refuse what has shipped meanwhile)."""
    for line_id in list(want):
        line = book.lines[line_id]
        # A digital line's undelivered units are the order's own to drop.
        take = min(want[line_id], line.live - line.shipped if line.digital else line.open)
        if take:
            book.edit(line, cancelled=take)
            want[line_id] -= take
    await sourcing.trim_claims(book)
    held = {k: min(q, book.lines[k].planned) for k, q in want.items()}
    if any(held.values()):
        given = await sourcing.release_planned(book, "cancelled", held)
        for line_id, q in given.items():
            book.edit(book.lines[line_id], cancelled=q)
            want[line_id] -= q
    per_f: dict[str, Optional[dict[str, int]]] = {}
    for f in sorted(book.fulfillments.values(), key=lambda f: f.fulfillment_id, reverse=True):
        if f.status not in FULFILLMENT_UNSHIPPED:
            continue
        for l in f.lines:
            take = min(want.get(l.line_id, 0), l.qty)
            if take:
                per_f.setdefault(f.fulfillment_id, {})[l.line_id] = take  # type: ignore[index]
                want[l.line_id] -= take
    if per_f:
        await ask_to_drop(book, per_f, reason)


# ---------------------------------------------------------------- reorchestrate (support)
async def reorchestrate(book: Book, body: ReorchestrateIn) -> None:
    # Orders that ran before the repeat of a move was refused replay as they ran (validators are not replayed).
    rules.check_reorchestrate(book, body, refuse_moved=workflow.patched("reorchestrate-refuses-moved"))
    exclude = set(body.exclude_nodes)
    target = book.fulfillments.get(body.fulfillment_id) if body.fulfillment_id else None
    if target is not None and target.status in FULFILLMENT_UNSHIPPED:
        # Dry-run first, so a hopeless request changes nothing.
        want = {l.line_id: l.qty for l in target.lines}
        probe = await _probe(book, want, exclude | {target.node_id}, body.to_node)
        if probe is not None:
            raise conflict(f"cannot re-source {target.fulfillment_id}: {probe}")
        silent = await ask_to_drop(book, {target.fulfillment_id: None}, f"reorchestrated: {body.reason}", move=True)
        if silent or target.status not in FULFILLMENT_FAILED:
            await publish(book)
            raise conflict(f"fulfillment {target.fulfillment_id} at {target.node_id} did not answer; try again"
                           if silent else f"fulfillment {target.fulfillment_id} is {target.status.value} at "
                           f"{target.node_id}: too late to move it")
        for line_id in want:
            line = book.lines[line_id]
            if target.node_id not in line.excluded:
                line.excluded.append(target.node_id)
    book.note("reorchestrate", {"reason": body.reason, "fulfillment_id": body.fulfillment_id,
                                "exclude_nodes": sorted(exclude), "to_node": body.to_node})
    plan = await sourcing.resource(book, "reorchestrate", exclude=exclude, to_node=body.to_node)
    if plan is not None and not plan.feasible and body.to_node:
        await publish(book)
        raise conflict(f"cannot source at {body.to_node}: {plan.reason}")
    await publish(book)


async def _probe(book: Book, want: dict[str, int], exclude: set[str], to_node: Optional[str]) -> Optional[str]:
    """Why these units cannot be sourced elsewhere (None: they can)."""
    probe = await activities.plan(sourcing.plan_request(book, want, Policy(max_splits=book.policy.max_splits),
                                                        exclude, to_node))
    if not probe.feasible or probe.unfilled:
        return probe.reason or "not enough stock at eligible nodes"
    return None
