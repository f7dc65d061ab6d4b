"""Sourcing: plan → record the decision → reserve → adopt; re-source what no node holds; release to nodes.

An order is confirmed only with its units reserved: a plan is adopted only once its reservation has landed
(all or nothing, in PostgreSQL), and after RESERVE_ATTEMPTS conflicts in a row (others took the stock between
plan and reserve) the answer is "not reserved", never the last plan. Every re-sourcing keeps the order's own
policy (ship complete, fill or kill, splits): a reroute may not split what the customer asked to keep whole.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Any, Iterable, Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        FulfillmentAssignment, FulfillmentInput, FulfillmentState, LineQty, MergeReservations, Plan, PlanLine,
        PlanRequest, Policy,
        ReleaseClaims, ReservationTarget, ReserveRequest, SupplyClaimLine,
    )
    from models.status import COUNTER_METHODS, FulfillmentKind, FulfillmentStatus as FS, OrderStatus as OS
    import workflows.activities as activities
    from workflows.store import WORKFLOW_OF
    import workflows.order.money as money
    from workflows.order.book import Book, Line, Planned
    from workflows.order.mirror import iso, notify

RESERVE_ATTEMPTS = 3
# Ping-pong between failing nodes is capped (Windows.max_reroutes); support's requests and waiting for stock are not.
UNCAPPED = {"reorchestrate", "backorder_retry", "supply_changed", "b2b_change", "carrier_exception"}


# ---------------------------------------------------------------- plan → record → reserve → adopt
async def source(book: Book, want: dict[str, int], policy: Policy, *, reason: str, release_now: bool,
                 exclude: Iterable[str] = (), to_node: Optional[str] = None) -> Optional[Plan]:
    """Plan and reserve these units; the plan is adopted only if its reservation lands."""
    want = {k: v for k, v in want.items() if v > 0}
    if not want:
        return None
    plan: Optional[Plan] = None
    for attempt in range(1, RESERVE_ATTEMPTS + 1):
        plan = await activities.plan(plan_request(book, want, policy, set(exclude), to_node))
        record_decision(book, plan, reason, attempt)
        if not plan.feasible:
            return plan
        planned = split(book, plan)
        claim_lines = sorted({l for l in want if book.lines[l].claims} | {c.line_id for c in plan.supply_claims})
        result = await activities.reserve(ReserveRequest(
            order_id=book.order_id, at=workflow.now(), channel=book.order.channel,
            customer_tier=book.order.customer.tier, hold_id=book.order.hold_id, claim_lines=claim_lines,
            supply_claims=plan.supply_claims,
            fulfillments=[FulfillmentAssignment(fulfillment_id=p.fulfillment_id, node_id=p.node_id, lines=p.lines)
                          for p in planned]))
        if result.ok:
            await adopt(book, plan, planned, claim_lines, release_now)
            return plan
        book.note("reservation_conflict", {"attempt": attempt, "nodes": result.short_nodes})
    book.note("not_reserved", {"reason": reason, "attempts": RESERVE_ATTEMPTS})
    return Plan(feasible=False, reason=f"stock kept changing while reserving ({RESERVE_ATTEMPTS} attempts)",
                unfilled=[LineQty(line_id=k, sku=book.lines[k].sku, qty=v) for k, v in want.items()])


def plan_request(book: Book, want: dict[str, int], policy: Policy, exclude: set[str],
                 to_node: Optional[str]) -> PlanRequest:
    # A line already promised is due by its promise: nodes that would deliver later cost more.
    lines = []
    for line_id, qty in want.items():
        line = book.lines[line_id]
        lines.append(PlanLine(line_id=line_id, sku=line.sku, qty=qty, delivery=line.delivery,
                              exclude_nodes=sorted(set(line.excluded) | exclude),
                              due=line.promised_by.date() if line.promised_by else None, pack=line.pack,
                              complete=book.backorder(line) == "ship_complete_only"))
    unreleased = book.phase in (OS.received, OS.awaiting_release)
    o = book.order
    return PlanRequest(order_id=o.order_id, channel=o.channel, customer_tier=o.customer.tier, lines=lines,
                       policy=policy, to_node=to_node, at=workflow.now(), hold_id=o.hold_id,
                       release_at=book.release_at if unreleased else None, requested_delivery_date=book.requested_date)


# A decision lists its lines up to this many per allocation; past it, their count and units (the
# fulfillments list them all).
LISTED_LINES = 200


def record_decision(book: Book, plan: Plan, reason: str, attempt: int) -> None:
    """The routing decision on the timeline; the per-node explanation once, not again on each retry."""
    book.note("routing_decision", {
        "reason": reason, "attempt": attempt, "feasible": plan.feasible, "why": plan.reason,
        "rules_version": plan.rules_version, "exact": plan.exact, "lower_bound": str(plan.lower_bound),
        "search_cost": str(plan.search_cost), "future_cost": str(plan.future_cost), "total_cost": str(plan.total_cost),
        "allocations": [{"node_id": a.node_id, "cost": str(a.cost), **listed(a.lines),
                         **({"expedited": a.method.value} if a.expedited else {})} for a in plan.allocations],
        "candidates": [c.model_dump(mode="json") for c in plan.candidates] if attempt == 1 else "as in attempt 1",
        "unfilled": listed(plan.unfilled)["lines"] if len(plan.unfilled) <= LISTED_LINES else listed(plan.unfilled),
    })


def listed(lines: list[LineQty]) -> dict[str, Any]:
    if len(lines) <= LISTED_LINES:
        return {"lines": [l.model_dump() for l in lines]}
    return {"line_count": len(lines), "units": sum(l.qty for l in lines)}


def split(book: Book, plan: Plan) -> list[Planned]:
    """One planned fulfillment per allocation, or several where it has more lines than a node takes at once."""
    size = max(book.order.windows.max_fulfillment_lines, 1)
    planned = []
    for a in plan.allocations:
        for i in range(0, len(a.lines), size):
            book.ids.fulfillment += 1
            planned.append(Planned(
                fulfillment_id=f"{book.order_id}-F{book.ids.fulfillment}", node_id=a.node_id,
                lines=list(a.lines[i:i + size]), method=a.method, postal_code=a.postal_code, carrier=a.carrier,
                ship_by=a.ship_by, promised_by=a.promised_by, hold_until=a.hold_until, transfer_to=a.transfer_to,
                wave=a.wave, ship_to=a.ship_to))
    return planned


async def adopt(book: Book, plan: Plan, planned: list[Planned], claim_lines: list[str], release_now: bool) -> None:
    """The reservation landed: the plan becomes the order's (claims, promises, planned or released fulfillments)."""
    new_claims: dict[str, list[SupplyClaimLine]] = {}
    for c in plan.supply_claims:
        new_claims.setdefault(c.line_id, []).append(c)
    for line_id in claim_lines:
        book.set_claims(book.lines[line_id], new_claims.get(line_id, []))
    if plan.supply_claims:
        book.note("supply_claimed", {"claims": [c.model_dump() for c in plan.supply_claims]})
    for d in plan.digital:
        book.make_digital(book.lines[d.line_id], book.release_at)
    for p in planned:
        book.plan(p)
        for l in p.lines:
            line = book.lines[l.line_id]
            if p.promised_by and (line.promised_by is None or p.promised_by > line.promised_by):
                line.promised_by = p.promised_by
                book.touch(line)
    if plan.backorder_dates:
        held = book.holders()
        repromise(book, {line_id: max(held.get(line_id, []) + [date])
                         for line_id, date in plan.backorder_dates.items()}, "incoming supply")
    if release_now:
        await release_due(book)


def repromise(book: Book, moves: dict[str, datetime], reason: str) -> None:
    """Lines promised for new dates: one timeline entry per date that moved from and to."""
    moved: dict[tuple[Optional[datetime], datetime], list[str]] = {}
    for line_id, new in moves.items():
        line = book.lines[line_id]
        if new != line.promised_by:
            moved.setdefault((line.promised_by, new), []).append(line_id)
            line.promised_by = new
            book.touch(line)
    note_moves(book, moved, reason)


def note_moves(book: Book, moved: dict[tuple[Optional[datetime], datetime], list[str]], reason: str) -> None:
    for (old, new), line_ids in sorted(moved.items(), key=lambda m: (m[0][1], m[0][0] or m[0][1])):
        book.note("repromised", {"lines": line_ids[:LISTED_LINES], "line_count": len(line_ids), "reason": reason,
                                 "old": old.isoformat() if old else None, "new": new.isoformat()})


# ---------------------------------------------------------------- release to nodes
def hold_left(p: Planned) -> float:
    return 0.0 if p.hold_until is None else (p.hold_until - workflow.now()).total_seconds()


async def release_due(book: Book) -> list[str]:
    """Start every planned fulfillment whose release day has come (the rest stay reserved); none while the
    payment is on hold."""
    due = [p for p in book.planned.values() if hold_left(p) <= 0]
    if not due or not await money.keep_alive(book):
        return []
    if book.policy.release == "wave":
        due = await consolidate(book, due)
    # Started together: each start waits for the server to say the child runs.
    await asyncio.gather(*(start(book, p) for p in due))
    return [p.fulfillment_id for p in due]


async def consolidate(book: Book, due: list[Planned]) -> list[Planned]:
    """One shipment per wave: the order's work due at one node, to one place, the same way, in one fulfillment
    (up to the lines a node takes at once). Each line's units add up; the earliest ship-by and latest promise hold."""
    size = max(book.order.windows.max_fulfillment_lines, 1)
    kept: dict[tuple, Planned] = {}
    merged: dict[str, list[str]] = {}
    out = []
    for p in due:
        key = (p.node_id, p.method, p.postal_code, p.ship_to, p.transfer_to, p.wave)
        into = kept.get(key)
        if into is None or p.wave is None or len({l.line_id for l in into.lines + p.lines}) > size:
            kept[key] = p
            out.append(p)
            continue
        units = {l.line_id: l for l in into.lines}
        for l in p.lines:
            if l.line_id in units:
                units[l.line_id] = LineQty(line_id=l.line_id, sku=l.sku, qty=units[l.line_id].qty + l.qty)
            else:
                units[l.line_id] = l
        book.unplan(p.fulfillment_id)
        book.replan(into, list(units.values()))
        into.ship_by = min((d for d in (into.ship_by, p.ship_by) if d), default=None)
        into.promised_by = max((d for d in (into.promised_by, p.promised_by) if d), default=None)
        merged.setdefault(into.fulfillment_id, []).append(p.fulfillment_id)
    for into_id, ids in merged.items():
        await activities.merge_reservations(MergeReservations(order_id=book.order_id, into=into_id, merged=ids))
        book.note("consolidated", {"into": into_id, "fulfillments": ids, "wave": iso(book.planned[into_id].wave)})
    return out


async def start(book: Book, p: Planned, start_status: Optional[FS] = None) -> None:
    """Release planned work to its node: a delivery, a pickup at the store, or the transfer that brings a pickup's
    units to the store (the pickup starts when they are received)."""
    kind = (FulfillmentKind.transfer if p.transfer_to else FulfillmentKind.pickup if p.method in COUNTER_METHODS
            else FulfillmentKind.delivery)
    pickup_id = None
    if kind == FulfillmentKind.transfer:
        book.ids.fulfillment += 1
        pickup_id = f"{book.order_id}-F{book.ids.fulfillment}"
    if p.fulfillment_id in book.planned:
        book.unplan(p.fulfillment_id)
    prepaid = take_prepaid(book, p.lines)
    book.start(FulfillmentState(fulfillment_id=p.fulfillment_id, node_id=p.node_id, status=start_status or FS.released,
                                lines=list(p.lines), ship_by=p.ship_by, promised_by=p.promised_by,
                                released_at=workflow.now(), requested_units=sum(l.qty for l in p.lines),
                                kind=kind, method=p.method, to_node_id=p.transfer_to, pickup_id=pickup_id,
                                wave=p.wave, prepaid=prepaid))
    w = book.order.windows
    what = {FulfillmentKind.transfer: f" to {p.transfer_to} for pickup", FulfillmentKind.pickup: f" for {p.method.value}",
            FulfillmentKind.delivery: ""}[kind]
    await workflow.start_child_workflow(
        WORKFLOW_OF[kind].run,
        FulfillmentInput(
            fulfillment_id=p.fulfillment_id, order_id=book.order_id, parent_workflow_id=workflow.info().workflow_id,
            node_id=p.node_id, lines=p.lines, unit_prices={l.line_id: book.price(l.line_id) for l in p.lines},
            currency=book.order.currency, method=p.method, postal_code=p.postal_code,
            accept_timeout=book.order.windows.accept_timeout, ship_by=p.ship_by, carrier=p.carrier,
            promised_by=p.promised_by, authorization=book.money.authorization, kind=kind, wave=p.wave,
            on_account=book.order.customer.account is not None,
            pickup_hold=w.pickup_hold, pickup_reminder=w.pickup_reminder, to_node_id=p.transfer_to,
            pickup_id=pickup_id, start_status=start_status, prepaid=prepaid,
        ),
        id=p.fulfillment_id,
        # A fulfillment finishes its own last steps even when the order closes (or continues as new) first.
        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        static_summary=f"{sum(l.qty for l in p.lines)} unit(s) of order {book.order_id} at {p.node_id}{what}",
    )


def take_prepaid(book: Book, lines: list[LineQty]) -> dict[str, int]:
    """The paid units of a lost parcel this fulfillment carries again (its capture leaves them out)."""
    taken: dict[str, int] = {}
    for l in lines:
        line = book.lines[l.line_id]
        if line.prepaid and (n := min(line.prepaid, l.qty)):
            line.prepaid -= n
            taken[l.line_id] = n
    return taken


async def pickup_after_transfer(book: Book, transfer: FulfillmentState) -> None:
    """The transfer reached the pickup store: the pickup starts there, the units already in the store's hands."""
    assert transfer.to_node_id is not None and transfer.pickup_id is not None
    pickup_id = transfer.pickup_id
    if pickup_id in book.fulfillments:
        return
    line = book.lines[transfer.lines[0].line_id]
    await start(book, Planned(fulfillment_id=pickup_id, node_id=transfer.to_node_id, lines=list(transfer.lines),
                              method=line.delivery.method, promised_by=transfer.promised_by), start_status=FS.picked)


async def release_planned(book: Book, reason: str, only: Optional[dict[str, int]] = None) -> dict[str, int]:
    """Give back the reservations of planned (unreleased) fulfillments, all or ``only`` units per line; returns
    what was given back per line."""
    budget = dict(only) if only is not None else None
    targets, given = [], {}
    for p in list(book.planned.values()):
        keep = []
        for l in p.lines:
            drop = l.qty if budget is None else min(budget.get(l.line_id, 0), l.qty)
            if drop:
                if budget is not None:
                    budget[l.line_id] -= drop
                given[l.line_id] = given.get(l.line_id, 0) + drop
                targets.append(ReservationTarget(order_id=book.order_id, fulfillment_id=p.fulfillment_id,
                                                 line_id=l.line_id, node_id=p.node_id, sku=l.sku, qty=l.qty - drop,
                                                 reason=reason))
            if l.qty - drop:
                keep.append(LineQty(line_id=l.line_id, sku=l.sku, qty=l.qty - drop))
        if len(keep) != len(p.lines) or any(k.qty != l.qty for k, l in zip(keep, p.lines)):
            book.replan(p, keep)
    if targets:
        await activities.set_reservations(targets, reason)
    return given


async def trim_claims(book: Book, gone: Iterable[str] = ()) -> None:
    """Claims on incoming supply never exceed a line's open units: the extra go back, latest ETA first; the
    claims of ``gone`` lines (removed by a modification) go back whole."""
    trimmed: dict[str, list[SupplyClaimLine]] = {line_id: [] for line_id in gone}
    for line_id, line in book.lines.items():
        extra = sum(c.qty for c in line.claims) - line.open
        if extra <= 0:
            continue
        keep = []
        for c in reversed(line.claims):
            drop = min(extra, c.qty)
            extra -= drop
            if c.qty - drop:
                keep.insert(0, SupplyClaimLine(line_id=line_id, supply_id=c.supply_id, sku=c.sku, qty=c.qty - drop))
        trimmed[line_id] = keep
    if not trimmed:
        return
    # Shrinking claims always fits: the reserve activity replaces them in one transaction.
    await activities.reserve(ReserveRequest(
        order_id=book.order_id, fulfillments=[], at=workflow.now(), claim_lines=sorted(trimmed),
        supply_claims=[c for keep in trimmed.values() for c in keep]))
    for line_id, keep in trimmed.items():
        if line_id in book.lines:
            book.set_claims(book.lines[line_id], keep)


async def release_claims(book: Book) -> None:
    if book.total.claimed:
        await activities.release_claims(ReleaseClaims(order_id=book.order_id))
        for line in book.lines.values():
            if line.claims:
                book.set_claims(line, [])


# ---------------------------------------------------------------- re-sourcing after release
async def resource(book: Book, reason: str, exclude: Iterable[str] = (), to_node: Optional[str] = None,
                   promised_before: Optional[dict[str, Optional[datetime]]] = None) -> Optional[Plan]:
    """Source every unit no live fulfillment holds (after a rejection, a timeout, a short pick, for support, or
    when stock comes); a date that moves is told against ``promised_before`` when the caller moved it first."""
    waiting = book.open_lines()
    if not waiting:
        return None
    if reason not in UNCAPPED:
        book.reroutes += 1
        if book.reroutes > book.order.windows.max_reroutes:
            book.note("backordered", {"reason": "reroute limit reached: waiting for support",
                                      "lines": [l.line_id for l in waiting]})
            return None
    before = {l.line_id: (promised_before or {}).get(l.line_id, l.promised_by) for l in waiting}
    plan = await source(book, {l.line_id: l.open for l in waiting}, book.policy, reason=reason, release_now=True,
                        exclude=exclude, to_node=to_node)
    await drop_unavailable(book)
    if plan is not None and book.open_lines() and (not plan.feasible or plan.unfilled):
        book.note("backordered", {"lines": [{"line_id": l.line_id, "qty": l.open} for l in book.open_lines()],
                                  "why": plan.reason or "not enough stock in eligible nodes",
                                  "expected": {k: v.isoformat() for k, v in plan.backorder_dates.items()}})
    await tell_moved_dates(book, before, plan, reason)
    return plan


async def drop_unavailable(book: Book) -> list[LineQty]:
    """Lines whose policy is cancel_remaining keep what a node has now: their other units are cancelled (their
    money released, supply promised to them given back), not backordered."""
    gone = [LineQty(line_id=l.line_id, sku=l.sku, qty=l.open) for l in book.lines.values()
            if l.open and book.backorder(l) == "cancel_remaining"]
    if not gone:
        return []
    book.ids.cancel += 1
    for g in gone:
        book.edit(book.lines[g.line_id], cancelled=g.qty)
    await trim_claims(book)
    await money.void_units(book, f"{book.order_id}:unavailable:{book.ids.cancel}", gone)
    book.note("unavailable_cancelled", {"reason": "backorder policy cancel_remaining",
                                        **listed(gone)})
    return gone


async def tell_moved_dates(book: Book, before: dict[str, Optional[datetime]], plan: Optional[Plan],
                           reason: str) -> None:
    """Record every date that moved; tell the customer once per date lines moved later to, and once which lines
    wait with no date yet (one message for a thousand lines, not a thousand)."""
    dated = plan.backorder_dates if plan is not None else {}
    moved: dict[tuple[Optional[datetime], datetime], list[str]] = {}
    later: dict[Optional[datetime], list[str]] = {}  # new date (None: none yet) → lines
    for line_id, old in before.items():
        line = book.lines[line_id]
        new = line.promised_by
        if old and new and new != old and line_id not in dated:
            moved.setdefault((old, new), []).append(line_id)
        if line.open and line_id not in dated:
            later.setdefault(None, []).append(line_id)
        elif new and (old is None or new > old):
            later.setdefault(new, []).append(line_id)
    note_moves(book, moved, reason)
    for new, line_ids in sorted(later.items(), key=lambda d: (d[0] is not None, d[0] or datetime.min)):
        # Keyed by the lines and the date: the same news is told once, however often it is worked out.
        key = f"delayed:{new.isoformat() if new else 'undated'}:{digest(line_ids)}"
        await notify(book, "delayed", key, {"lines": line_ids[:LISTED_LINES], "line_count": len(line_ids),
                                            "promised_by": new.isoformat() if new else None})


def digest(line_ids: list[str]) -> str:
    return hashlib.sha256("\x00".join(sorted(line_ids)).encode()).hexdigest()[:16]
