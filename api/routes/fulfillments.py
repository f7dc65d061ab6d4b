"""Partner apps: a node's work queue, milestone signals, and receiving returns."""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import text

import api.answers as A
from api import idempotency
from api.auth import ANY_ROLE, Principal
from api.temporal_errors import WorkflowClosed, run_update
from api.views import fulfillment_view, return_answer, return_view
from models.messages import PickIn, ReceiveIn, RejectIn, ShipIn
from models.status import FULFILLMENT_PATH, MILESTONE_TARGET, FulfillmentStatus, Role
from workflows.fulfillment import FulfillmentWorkflow
from workflows.order import OrderWorkflow

router = APIRouter(tags=["fulfillments"])


@router.get("/fulfillments", summary="A node's work queue", response_model=A.FulfillmentList,
            responses=A.errors(403, 422))
async def list_fulfillments(request: Request, who: Principal = Depends(ANY_ROLE),
                            node_id: Optional[str] = None, status: Optional[FulfillmentStatus] = None,
                            limit: int = 200) -> dict[str, Any]:
    if who.role == Role.client:
        raise HTTPException(403, "clients read orders, not node work queues")
    if who.role == Role.partner:
        if node_id and node_id != who.node_id:
            raise HTTPException(403, f"this key reads node {who.node_id} only")
        node_id = who.node_id
    where, params = ["TRUE"], {"limit": min(max(limit, 1), 1000)}
    if node_id:
        where.append("node_id = :n"); params["n"] = node_id
    if status:
        where.append("status = :s"); params["s"] = status.value
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT * FROM fulfillments WHERE " + " AND ".join(where) + " ORDER BY created_at LIMIT :limit"),
            params)).all()
    return {"fulfillments": [fulfillment_view(r) for r in rows]}


async def _fulfillment(request: Request, fulfillment_id: str, who: Principal):
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT f.*, o.channel FROM fulfillments f JOIN orders o USING (order_id) WHERE f.fulfillment_id = :f"),
            {"f": fulfillment_id})).first()
    if row is None:
        raise HTTPException(404, f"no fulfillment {fulfillment_id}")
    if not who.can_touch_node(row.node_id):
        raise HTTPException(403, "this key may not touch another node's fulfillment")
    return row


@router.get("/fulfillments/{fulfillment_id}", summary="One fulfillment", response_model=A.FulfillmentView,
            responses=A.errors(403, 404))
async def get_fulfillment(fulfillment_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict:
    return fulfillment_view(await _fulfillment(request, fulfillment_id, who))


_PATH_RANK = {s.value: i for i, s in enumerate(FULFILLMENT_PATH)}


def _repeat_of_final(milestone: str, status: str) -> bool:
    """Is this milestone already behind a fulfillment that has finished?"""
    target = MILESTONE_TARGET[milestone].value
    if milestone == "reject":
        return status == "rejected"
    return status in _PATH_RANK and _PATH_RANK[target] <= _PATH_RANK[status]


MILESTONE_BODY = {"requestBody": {"required": False, "description": (
    "pick: `{lines: [{line_id, qty}]}` (less than asked is a short pick: the rest is re-sourced); "
    "ship: `{carrier?, tracking?}`; reject: `{reason}`; accept, pack and deliver take none."),
    "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": f"#/components/schemas/{m.__name__}"} for m in (PickIn, ShipIn, RejectIn)]}}}}}


@router.post("/fulfillments/{fulfillment_id}/{milestone}", summary="Partner milestone: accept, reject, pick, pack, ship, deliver",
             response_model=A.MilestoneAnswer, responses=A.errors(400, 403, 404, 409, 422, 503),
             openapi_extra=MILESTONE_BODY)
async def milestone(
    fulfillment_id: str, milestone: Literal["accept", "reject", "pick", "pack", "ship", "deliver"],
    request: Request, who: Principal = Depends(ANY_ROLE),
) -> dict[str, Any]:
    if who.role == Role.client:
        raise HTTPException(403, "only the node's partner key or staff signal milestones")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise HTTPException(400, f"the {milestone} body is not JSON")
    await _fulfillment(request, fulfillment_id, who)  # exists, and this key may touch its node
    payload: Any = None
    try:
        if milestone == "reject":
            payload = RejectIn.model_validate(body or {})
        elif milestone == "pick":
            payload = PickIn.model_validate(body or {})
        elif milestone == "ship":
            payload = ShipIn.model_validate(body or {})
        elif body:
            raise HTTPException(422, f"{milestone} takes no body")
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(422, f"invalid {milestone} body: {e}")
    handle = request.app.state.temporal.get_workflow_handle(fulfillment_id)
    update, update_id = getattr(FulfillmentWorkflow, milestone), idempotency.update_id(request)
    try:
        result = await run_update(lambda: handle.execute_update(update, payload, id=update_id) if payload is not None
                                  else handle.execute_update(update, id=update_id))
    except WorkflowClosed:
        # The fulfillment has finished; a repeat of what it did is a no-op, anything else is too late.
        current = (await _fulfillment(request, fulfillment_id, who)).status
        if _repeat_of_final(milestone, current):
            return {"fulfillment_id": fulfillment_id, "status": current, "changed": False}
        raise HTTPException(409, f"fulfillment is {current}: {milestone} is not possible")
    return result.model_dump(mode="json")


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
