"""Partner apps: a node's work queue, milestone signals, and receiving returns."""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AwareDatetime
from sqlalchemy import text

import api.answers as A
from api import idempotency
from api.auth import ANY_ROLE, Principal
from api.temporal_errors import WorkflowClosed, run_update
from api.views import fulfillment_view, line_packs, return_answer, return_view
from models.messages import ArrivedIn, CollectIn, PickIn, ReceiveIn, RejectIn, ShipIn
from models.status import AWAITING_CUSTOMER, FULFILLMENT_PATHS, MILESTONES, NOTICES, FulfillmentKind, FulfillmentStatus, Role
from workflows.store import WORKFLOW_OF
from workflows.order import OrderWorkflow

router = APIRouter(tags=["fulfillments"])


@router.get("/fulfillments", summary="A node's work queue", response_model=A.FulfillmentList,
            responses=A.errors(403, 422))
async def list_fulfillments(request: Request, who: Principal = Depends(ANY_ROLE),
                            node_id: Optional[str] = None, status: Optional[FulfillmentStatus] = None,
                            wave: Optional[AwareDatetime] = Query(None, description="one wave's work (its instant, e.g."
                                                                  " 2026-12-07T08:00:00-06:00): its pick list"),
                            limit: int = 200) -> dict[str, Any]:
    if who.role == Role.client:
        raise HTTPException(403, "clients read orders, not node work queues")
    if who.role == Role.partner:
        if node_id and node_id != who.node_id:
            raise HTTPException(403, f"this key reads node {who.node_id} only")
        node_id = who.node_id
    where, params = ["TRUE"], {"limit": min(max(limit, 1), 1000)}
    if node_id:
        # A store also sees the transfers on their way to it (to receive them).
        where.append("(node_id = :n OR (to_node_id = :n AND status = 'in_transit'))"); params["n"] = node_id
    if status:
        where.append("status = :s"); params["s"] = status.value
    if wave is not None:
        if not node_id:
            raise HTTPException(422, "a wave is a node's: give node_id with wave")
        where.append("wave = :w"); params["w"] = wave
    # A customer waiting outside first (curbside), then what is due soonest: the ship-by cutoff, a pickup's
    # ready-by date.
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT * FROM fulfillments WHERE " + " AND ".join(where) + " ORDER BY"
            " (arrived_at IS NOT NULL AND status = ANY(:waiting)) DESC, arrived_at,"
            " COALESCE(ship_by, promised_by) NULLS LAST, created_at LIMIT :limit"),
            {**params, "waiting": _WAITING})).all()
        packs = await line_packs(conn, [r.order_id for r in rows])
    return {"fulfillments": [fulfillment_view(r, packs) for r in rows], "pick_list": pick_list(rows)}


_WAITING = [s.value for s in AWAITING_CUSTOMER]
_TO_PICK = (FulfillmentStatus.released.value, FulfillmentStatus.accepted.value)


def pick_list(rows: Any) -> list[dict[str, Any]]:
    """The units still to pick, by SKU: one walk through the aisles for many orders."""
    by_sku: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.status not in _TO_PICK:
            continue
        for l in r.lines:
            item = by_sku.setdefault(l["sku"], {"sku": l["sku"], "qty": 0, "picks": []})
            item["qty"] += l["qty"]
            item["picks"].append({"fulfillment_id": r.fulfillment_id, "line_id": l["line_id"], "qty": l["qty"]})
    return [by_sku[k] for k in sorted(by_sku)]


async def _fulfillment(request: Request, fulfillment_id: str, who: Principal, may: str = "read"):
    """The fulfillment, if this key may: read it (its node's partner, a transfer's receiving store, staff), send
    its node's milestones (``node``), receive a transfer (``receive``: the receiving store), or check in for the
    customer (``channel``: the order's channel too)."""
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT f.*, o.channel FROM fulfillments f JOIN orders o USING (order_id) WHERE f.fulfillment_id = :f"),
            {"f": fulfillment_id})).first()
    if row is None:
        raise HTTPException(404, f"no fulfillment {fulfillment_id}")
    if may == "channel" and who.role == Role.client:
        if not who.can_see_channel(row.channel):
            raise HTTPException(403, "this key may not touch another channel's order")
    elif may == "receive" and row.to_node_id:
        if not who.can_touch_node(row.to_node_id):
            raise HTTPException(403, f"the receiving store ({row.to_node_id}) records a transfer's receipt")
    elif not who.can_touch_node(row.node_id) and not (
            may == "read" and row.to_node_id and who.can_touch_node(row.to_node_id)):
        raise HTTPException(403, "this key may not touch another node's fulfillment")
    return row


@router.get("/fulfillments/{fulfillment_id}", summary="One fulfillment", response_model=A.FulfillmentView,
            responses=A.errors(403, 404))
async def get_fulfillment(fulfillment_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict:
    row = await _fulfillment(request, fulfillment_id, who)
    async with request.app.state.db.engine.connect() as conn:
        return fulfillment_view(row, await line_packs(conn, [row.order_id]))


BODY = {"reject": RejectIn, "pick": PickIn, "ship": ShipIn, "collect": CollectIn, "arrived": ArrivedIn}
# Sent by the order's channel on the customer's behalf (a curbside check-in), not by the store.
CUSTOMER_SIDE = {"arrived"}
Milestone = Literal["accept", "reject", "pick", "pack", "ship", "deliver", "ready", "collect", "arrived", "receive"]


def _repeat_of_final(kind: str, milestone: str, status: str) -> bool:
    """Is this milestone already behind a fulfillment that has finished?"""
    k = FulfillmentKind(kind)
    if milestone == "reject":
        return status == "rejected"
    path = [p.value for p in FULFILLMENT_PATHS[k]]
    target = MILESTONES[k][milestone].value
    return status in path and path.index(target) <= path.index(status)


MILESTONE_BODY = {"requestBody": {"required": False, "description": (
    "pick: `{lines: [{line_id, qty}]}` (less than asked is a short pick: the rest is re-sourced); "
    "ship: `{carrier?, tracking?}`; reject: `{reason}`; collect: `{pickup_code, lines?}` (lines the customer "
    "takes; the rest is cancelled); arrived: `{bay?, note?}`; accept, pack, deliver, ready and receive take none."),
    "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": f"#/components/schemas/{m.__name__}"} for m in (PickIn, ShipIn, RejectIn, CollectIn, ArrivedIn)]}}}}}


@router.post("/fulfillments/{fulfillment_id}/{milestone}",
             summary="Milestone: accept, reject, pick, pack, ship, deliver; a pickup's ready, collect, arrived",
             description=(
                 "A delivery goes accept → pick → pack → ship → deliver; a pickup or curbside order accept → pick → "
                 "ready (the customer gets a pickup code; the hold starts) → collect {pickup_code} (a wrong code is "
                 "422 and changes nothing); arrived (curbside check-in, by the order's channel) changes no status "
                 "and puts the customer first in the store's work queue. A milestone the fulfillment's kind does "
                 "not have, or out of order, is 409; a repeat is 200 with changed false."),
             response_model=A.MilestoneAnswer, responses=A.errors(400, 403, 404, 409, 422, 503),
             openapi_extra=MILESTONE_BODY)
async def milestone(fulfillment_id: str, milestone: Milestone, request: Request,
                    who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise HTTPException(400, f"the {milestone} body is not JSON")
    row = await _for_milestone(request, fulfillment_id, milestone, who)
    kind = FulfillmentKind(row.kind)
    if milestone not in MILESTONES[kind] and milestone not in NOTICES.get(kind, set()):
        raise HTTPException(409, f"{milestone} is not a milestone of a {kind.value} fulfillment")
    payload: Any = None
    try:
        if milestone in BODY:
            payload = BODY[milestone].model_validate(body or {})
        elif body:
            raise HTTPException(422, f"{milestone} takes no body")
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(422, f"invalid {milestone} body: {e}")
    handle = request.app.state.temporal.get_workflow_handle(fulfillment_id)
    update, update_id = getattr(WORKFLOW_OF[kind], milestone), idempotency.update_id(request)
    try:
        result = await run_update(lambda: handle.execute_update(update, payload, id=update_id) if payload is not None
                                  else handle.execute_update(update, id=update_id))
    except WorkflowClosed:
        # The fulfillment has finished; a repeat of what it did is a no-op, anything else is too late.
        current = (await _for_milestone(request, fulfillment_id, milestone, who)).status
        if milestone in MILESTONES[kind] and _repeat_of_final(kind.value, milestone, current):
            return {"fulfillment_id": fulfillment_id, "status": current, "changed": False}
        raise HTTPException(409, f"fulfillment is {current}: {milestone} is not possible")
    return result.model_dump(mode="json")


async def _for_milestone(request: Request, fulfillment_id: str, milestone: str, who: Principal):
    """The fulfillment, if this key may send this milestone: the node's partner or staff; a check-in also the
    order's own channel."""
    if who.role == Role.client and milestone not in CUSTOMER_SIDE:
        raise HTTPException(403, "only the node's partner key or staff signal milestones")
    may = "channel" if milestone in CUSTOMER_SIDE else "receive" if milestone == "receive" else "node"
    return await _fulfillment(request, fulfillment_id, who, may)


@router.get("/returns/{return_id}", summary="A return", response_model=A.ReturnView, responses=A.errors(403, 404))
async def get_return(return_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return return_view(await _return(request, return_id, who))


async def _return(request: Request, return_id: str, who: Principal):
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT r.*, o.channel FROM returns r JOIN orders o USING (order_id) WHERE r.return_id = :r"),
            {"r": return_id})).first()
    if row is None:
        raise HTTPException(404, f"no return {return_id}")
    allowed = who.can_see_channel(row.channel) if who.role != Role.partner else who.node_id == row.node_id
    if not allowed:
        raise HTTPException(403, "this key may not see this return")
    return row


@router.post("/returns/{return_id}/receive", summary="Receive returned units; sellable ones go back to stock, refund once",
             response_model=A.ReturnAnswer, responses=A.errors(403, 404, 409, 422, 503))
async def receive_return(return_id: str, body: ReceiveIn, request: Request,
                         who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    if who.role == Role.client:
        raise HTTPException(403, "the receiving node or staff record returns")
    row = await _return(request, return_id, who)
    handle = request.app.state.temporal.get_workflow_handle(row.order_id)
    try:
        result = await run_update(lambda: handle.execute_update(OrderWorkflow.receive_return, args=[return_id, body],
                                                                id=idempotency.update_id(request)))
    except WorkflowClosed:
        current = await _return(request, return_id, who)
        if current.status == "refunded":
            view = return_view(current)
            return {k: view[k] for k in ("return_id", "status", "label", "refund_amount")}
        raise HTTPException(409, "the order is closed")
    return return_answer(result)
