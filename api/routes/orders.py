"""Orders: place (idempotent by channel + external_id), read, list, modify, cancel, reorchestrate, return, exchange."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import datetime, timedelta
from typing import Any, Collection, Mapping, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from sqlalchemy import text
from temporalio.client import (
    WithStartWorkflowOperation, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

import api.answers as A
from api import idempotency
from api.auth import ANY_ROLE, STAFF, Principal, require
from api.placement import record_intake, start_options, windows
from api.schemas import OrderCreate, OrderPatch
from api.temporal_errors import WorkflowClosed, run_update, unreachable
from api.views import order_view, return_answer
from models.messages import (
    Address, ApproveIn, CancelIn, DeclineIn, Delivery, ExchangeIn, Line, ModifyIn, ModifyLine, OrderInput, OrderLineIn, PlacedOrder, Policy,
    MAX_LINE_EACHES, PromiseView, ReorchestrateIn, ReturnIn, eaches,
)
from models.status import DeliveryMethod, OrderStatus, Role, takes_returns
from nodal.logging import get_logger
from workflows.order import OrderWorkflow

router = APIRouter(tags=["orders"])
CLIENTS = require(Role.admin, Role.client)
SHIP_METHODS = {DeliveryMethod.ship_standard, DeliveryMethod.ship_express, DeliveryMethod.same_day}


def order_id_for(channel: str, external_id: str) -> str:
    digest = hashlib.sha256(f"{channel}\x00{external_id}".encode()).digest()
    return "ORD-" + base64.b32encode(digest).decode()[:16]


async def check_lines(conn, lines: list[OrderLineIn]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """What is wrong with these lines against the catalog and the network (empty = fine), and the pack sizes of
    their SKUs (what their uom counts in eaches)."""
    skus = sorted({l.sku for l in lines})
    known = {r.sku: r.pack_sizes or {} for r in (await conn.execute(
        text("SELECT sku, pack_sizes FROM skus WHERE sku = ANY(:s)"), {"s": skus}))}
    postal = sorted({l.delivery.address.postal_code for l in lines
                     if l.delivery.address and (l.delivery.address.lat is None or l.delivery.address.lon is None)})
    located = {r.postal_code for r in (await conn.execute(
        text("SELECT postal_code FROM postal_codes WHERE postal_code = ANY(:p)"), {"p": postal}))}
    pickup = sorted({l.delivery.pickup_node_id for l in lines if l.delivery.pickup_node_id})
    nodes = {r.node_id: r.capabilities or [] for r in (await conn.execute(
        text("SELECT node_id, capabilities FROM nodes WHERE node_id = ANY(:n)"), {"n": pickup}))}
    return line_problems(lines, known, located, nodes), known


def pack_of(known: Mapping[str, Mapping[str, int]], sku: str, uom: str) -> int:
    """Eaches in one ``uom`` of ``sku`` (line_problems has said whether the SKU has that pack size)."""
    return 1 if uom == "each" else known[sku][uom]


def line_problems(lines: list[OrderLineIn], known: Mapping[str, Mapping[str, int]], located: Collection[str],
                  nodes: dict[str, list[str]]) -> list[str]:
    """check_lines given what it reads: the SKUs that exist with their pack sizes, the postal codes with
    coordinates and the pickup nodes' capabilities (a quote passes what its network view already holds)."""
    problems = []
    ids = [l.line_id for l in lines if l.line_id]
    if len(ids) != len(set(ids)):
        problems.append("line_id values must be unique")
    problems += [f"unknown sku {s}" for s in sorted({l.sku for l in lines}) if s not in known]
    for i, l in enumerate(lines):
        where = f"lines[{i}]"
        if l.uom != "each" and l.sku in known:
            size = known[l.sku].get(l.uom)
            if not size:
                problems.append(f"{where}: {l.sku} has no {l.uom} size: order it in "
                                f"{', '.join(['each', *sorted(known[l.sku])])}")
            elif l.qty * size > MAX_LINE_EACHES:
                problems.append(f"{where}: {l.qty} {l.uom} of {size} is more than {MAX_LINE_EACHES} units")
        d = l.delivery
        if d.method in SHIP_METHODS:
            if d.address is None:
                problems.append(f"{where}: {d.method.value} needs delivery.address")
            elif d.address.postal_code not in located and (d.address.lat is None or d.address.lon is None):
                problems.append(f"{where}: unknown postal code {d.address.postal_code}; give lat and lon")
        else:
            if not d.pickup_node_id:
                problems.append(f"{where}: {d.method.value} needs delivery.pickup_node_id")
            elif d.pickup_node_id not in nodes:
                problems.append(f"{where}: unknown node {d.pickup_node_id}")
            elif d.method.value not in nodes[d.pickup_node_id]:
                problems.append(f"{where}: node {d.pickup_node_id} does not offer {d.method.value}")
    return problems


def _lines(lines: list[OrderLineIn], known: Mapping[str, Mapping[str, int]] = {}) -> list[Line]:
    out, used, n = [], {l.line_id for l in lines if l.line_id}, 0
    for l in lines:
        lid = l.line_id
        if not lid:
            n += 1
            while f"L{n}" in used:
                n += 1
            lid = f"L{n}"
            used.add(lid)
        pack = pack_of(known, l.sku, l.uom)
        qty, price = eaches(l.qty, l.unit_price, pack)
        out.append(Line(line_id=lid, sku=l.sku, qty=qty, unit_price=price, delivery=l.delivery, uom=l.uom, pack=pack,
                        backorder=l.backorder))
    return out


def _check_size(request: Request, lines: Optional[list[OrderLineIn]]) -> None:
    if why := _too_many(request.app.state, lines):
        raise HTTPException(422, why)


def _too_many(app: Any, lines: Optional[list[OrderLineIn]]) -> Optional[str]:
    most = app.settings.max_order_lines
    if lines is not None and len(lines) > most:
        return (f"an order may have at most {most} lines (NODAL_MAX_ORDER_LINES); this one has {len(lines)}: split it"
                " into several orders")
    return None


class Refused(HTTPException):
    """An order not taken, and each thing wrong with it (``lines[i]: …`` for a line's)."""

    def __init__(self, status: int, problems: list[str]):
        super().__init__(status, "; ".join(problems))
        self.problems = problems


async def admit(app: Any, body: OrderCreate, who: Principal) -> tuple[str, Optional[OrderInput], Any]:
    """Check a placement and record its intake: (order id, the intake if new, else the order's row as it was).
    Raises Refused (4xx) with nothing written."""
    if who.role == Role.client and who.channel != body.channel:
        raise Refused(403, [f"this key places orders for channel {who.channel} only"])
    if why := _too_many(app, body.lines):
        raise Refused(422, [why])
    order_id = order_id_for(body.channel, body.external_id)
    async with app.db.engine.begin() as conn:
        existing = (await conn.execute(
            text("SELECT status, intake FROM orders WHERE order_id = :o"), {"o": order_id})).first()
        if existing is not None:
            return order_id, None, existing
        problems, known = await check_lines(conn, body.lines)
        if body.hold_id:
            hold = (await conn.execute(text(
                "SELECT channel, order_id FROM checkout_holds WHERE hold_id = :h"),
                {"h": body.hold_id})).first()
            if hold is None or hold.channel != body.channel:
                problems.append(f"unknown hold {body.hold_id} for channel {body.channel}")
            elif hold.order_id:
                raise Refused(409, [f"hold {body.hold_id} already became order {hold.order_id}"])
        if problems:
            raise Refused(422, problems)
        customer = body.customer.model_copy(update={"tier": who.buying_tier(body.customer.tier)})
        inp = OrderInput(
            order_id=order_id, external_id=body.external_id, channel=body.channel, customer=customer,
            lines=_lines(body.lines, known), policy=body.policy or Policy(), currency=body.currency,
            hold_id=body.hold_id, requested_delivery_date=body.requested_delivery_date, windows=windows(app.settings),
        )
        if await record_intake(conn, inp):
            return order_id, inp, None
        return order_id, None, (await conn.execute(
            text("SELECT status, intake FROM orders WHERE order_id = :o"), {"o": order_id})).first()


def _placed_body(p: PlacedOrder) -> dict[str, Any]:
    return p.model_dump(mode="json")


async def _start(request: Request, inp: OrderInput) -> PlacedOrder:
    app = request.app.state
    start = WithStartWorkflowOperation(OrderWorkflow.run, **start_options(inp, app.settings.task_queue))
    try:
        return await app.temporal.execute_update_with_start_workflow(
            OrderWorkflow.await_promise, start_workflow_operation=start, id=idempotency.update_id(request),
            rpc_timeout=timedelta(seconds=app.settings.place_timeout_s))
    except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not unreachable(e):
            raise
        # The intake is durable: the workflow runs (or the recovery sweep starts it) and the promise
        # follows; the caller reads it with GET /orders/{id}.
        get_logger(order_id=inp.order_id).warning("order.promise_pending", error=type(e).__name__)
        return PlacedOrder(order_id=inp.order_id, status=OrderStatus.received, promise=PromiseView())


@router.post("/orders", status_code=201, summary="Place an order (idempotent by channel + external_id)",
             response_model=PlacedOrder, responses={200: {"model": PlacedOrder, "description": "This channel's external_id was placed before: the same order, nothing started again"}, **A.errors(403, 409, 413, 422, 503)},
             description="201 with the promise once the order is promised and its stock reserved. The status may be `rejected` (a 201 all the same: the order was taken, but nothing could serve it under its policy, e.g. no stock; GET /orders/{id} says why) or `received` (Temporal slow or away: the promise follows, read it with GET).")
async def create_order(body: OrderCreate, request: Request, response: Response,
                       who: Principal = Depends(CLIENTS)) -> dict[str, Any]:
    app = request.app.state
    order_id, inp, existing = await admit(app, body, who)
    log = get_logger(order_id=order_id, channel=body.channel)
    if inp is not None:
        log.info("order.placing", lines=len(body.lines))
        placed = await _start(request, inp)
        log.info("order.placed", status=placed.status.value)
        return _placed_body(placed)
    # Seen before: answer with what exists, and make sure its workflow runs (a placement cut short
    # between the intake row and the workflow start is completed here).
    response.status_code = 200
    handle = app.temporal.get_workflow_handle(order_id)
    try:
        await handle.describe()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise HTTPException(503, f"workflow service unavailable: {e.message}")
        return _placed_body(await _start(request, OrderInput.model_validate(existing.intake)))
    except RuntimeError as e:
        if not unreachable(e):
            raise
        # Temporal is away: answer from the read model; the recovery sweep starts the workflow if needed.
    async with app.db.engine.connect() as conn:
        view = await order_view(conn, order_id)
    assert view is not None
    return {"order_id": order_id, "status": view["status"],
            "promise": {"promised_by": view["promised_by"],
                        "lines": [{"line_id": l["line_id"], "promised_by": l["promised_by"]} for l in view["lines"]]}}


async def _visible_order(request: Request, order_id: str, who: Principal) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        view = await order_view(conn, order_id)
    if view is None:
        raise HTTPException(404, f"no order {order_id}")
    if who.role == Role.partner or not who.can_see_channel(view["channel"]):
        raise HTTPException(403, "this key may not see this order")
    return view


@router.get("/orders/{order_id}", summary="An order with its fulfillments, returns, payments and timeline",
            response_model=A.OrderView, responses=A.errors(403, 404))
async def get_order(order_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return await _visible_order(request, order_id, who)


def _cursor(created_at: datetime, order_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{order_id}".encode()).decode()


@router.get("/orders", summary="Orders from the read model, newest first", response_model=A.OrderList,
            responses=A.errors(403, 422))
async def list_orders(
    request: Request, who: Principal = Depends(ANY_ROLE),
    status: Optional[str] = None, customer_id: Optional[str] = None, channel: Optional[str] = None,
    node_id: Optional[str] = None, limit: int = Query(50, ge=1, le=500), cursor: Optional[str] = None,
    at_risk: Optional[bool] = Query(None, description="only orders with a fulfillment past a promise milestone"),
) -> dict[str, Any]:
    if who.role == Role.partner:
        raise HTTPException(403, "partners read their node's work at /fulfillments")
    if who.role == Role.client:
        if channel and channel != who.channel:
            raise HTTPException(403, f"this key reads channel {who.channel} only")
        channel = who.channel
    where, params = ["TRUE"], {"limit": limit + 1}
    if status:
        where.append("o.status = :status"); params["status"] = status
    if customer_id:
        where.append("o.customer_id = :cid"); params["cid"] = customer_id
    if at_risk is not None:
        where.append("o.at_risk = :risk"); params["risk"] = at_risk
    if channel:
        where.append("o.channel = :channel"); params["channel"] = channel
    if node_id:
        where.append("EXISTS (SELECT 1 FROM fulfillments f WHERE f.order_id = o.order_id AND f.node_id = :node)")
        params["node"] = node_id
    if cursor:
        try:
            at, oid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
            params["c_at"], params["c_id"] = datetime.fromisoformat(at), oid
        except Exception:
            raise HTTPException(422, "invalid cursor")
        where.append("(o.created_at, o.order_id) < (:c_at, :c_id)")
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT o.order_id, o.external_id, o.channel, o.customer_id, o.status, o.promised_by, o.created_at,"
            " o.total, o.currency, o.at_risk FROM orders o WHERE " + " AND ".join(where) +
            " ORDER BY o.created_at DESC, o.order_id DESC LIMIT :limit"), params)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "orders": [{
            "order_id": r.order_id, "external_id": r.external_id, "channel": r.channel,
            "customer_id": r.customer_id, "status": r.status, "total": f"{r.total:.2f}", "currency": r.currency,
            "promised_by": r.promised_by.isoformat() if r.promised_by else None,
            "created_at": r.created_at.isoformat(), "at_risk": r.at_risk,
        } for r in rows],
        "next_cursor": _cursor(rows[-1].created_at, rows[-1].order_id) if more else None,
    }


async def _update(request: Request, order_id: str, update: Any, arg: Any, closed_message: str) -> Any:
    handle = request.app.state.temporal.get_workflow_handle(order_id)
    try:
        # Under an Idempotency-Key the Update's id is the request's: a retry is the same Update, applied once.
        return await run_update(lambda: handle.execute_update(update, arg, id=idempotency.update_id(request)))
    except WorkflowClosed:
        # Say how it ended: a client whose first answer was lost (a retry without an Idempotency-Key) sees that
        # its cancel took effect.
        async with request.app.state.db.engine.connect() as conn:
            status = (await conn.execute(text("SELECT status FROM orders WHERE order_id = :o"),
                                         {"o": order_id})).scalar()
        raise HTTPException(409, f"{closed_message} (the order is {status})" if status else closed_message)


async def _order_for_change(request: Request, order_id: str, who: Principal) -> dict[str, Any]:
    view = await _visible_order(request, order_id, who)
    if who.role not in (Role.admin, Role.support, Role.client):
        raise HTTPException(403, "this key may not change orders")
    return view


@router.patch("/orders/{order_id}", summary="Modify an order inside its remorse window", response_model=PlacedOrder,
              responses=A.errors(403, 404, 409, 422, 503))
async def modify_order(order_id: str, body: OrderPatch, request: Request,
                       who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    await _order_for_change(request, order_id, who)
    _check_size(request, body.lines)
    address = None
    if body.address is not None:
        try:
            address = Address.model_validate(body.address)
        except Exception as e:
            raise HTTPException(422, f"invalid address: {e}")
    known: dict[str, dict[str, int]] = {}
    if body.lines is not None or address is not None:
        lines = body.lines or []
        if address is not None:
            lines = lines + [OrderLineIn(sku="_", qty=1, unit_price=0, delivery=Delivery(
                method=DeliveryMethod.ship_standard, address=address))]
        async with request.app.state.db.engine.connect() as conn:
            problems, known = await check_lines(conn, lines)
        if problems := [p for p in problems if "unknown sku _" not in p]:
            raise HTTPException(422, "; ".join(problems))
    mod = ModifyIn(
        lines=None if body.lines is None else [
            ModifyLine(line_id=l.line_id, sku=l.sku, delivery=l.delivery, uom=l.uom, pack=pack, backorder=l.backorder,
                       **dict(zip(("qty", "unit_price"), eaches(l.qty, l.unit_price, pack))))
            for l in body.lines for pack in [pack_of(known, l.sku, l.uom)]],
        address=address, policy=body.policy, requested_delivery_date=body.requested_delivery_date,
    )
    placed = await _update(request, order_id, OrderWorkflow.modify, mod,
                           "order is closed: it can no longer be modified")
    return _placed_body(placed)


@router.post("/orders/{order_id}/cancel", summary="Cancel an order or some of its lines", response_model=A.OrderView,
             responses=A.errors(403, 404, 409, 422, 503))
async def cancel_order(order_id: str, body: CancelIn, request: Request,
                       who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    await _order_for_change(request, order_id, who)
    await _update(request, order_id, OrderWorkflow.cancel, body, "order is closed: nothing left to cancel")
    return await _visible_order(request, order_id, who)


async def _by_approver(request: Request, order_id: str, who: Principal, update: Any, body: Any,
                       what: str) -> dict[str, Any]:
    """Staff, or a client key of the order's channel flagged approver (the buyer's approver), approve or decline."""
    await _visible_order(request, order_id, who)
    if who.role not in (Role.admin, Role.support) and not (who.role == Role.client and who.approver):
        raise HTTPException(403, "this key may not approve orders: an admin flags a client key approver "
                                 "(POST /api-keys {approver: true})")
    await _update(request, order_id, update, body.model_copy(update={"by": who.key_id}),
                  f"order is closed: nothing to {what}")
    return await _visible_order(request, order_id, who)


@router.post("/orders/{order_id}/approve", summary="Approve an order awaiting approval: its remorse window starts",
             response_model=A.OrderView, responses=A.errors(403, 404, 409, 422, 503))
async def approve_order(order_id: str, body: ApproveIn, request: Request,
                        who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return await _by_approver(request, order_id, who, OrderWorkflow.approve, body, "approve")


@router.post("/orders/{order_id}/decline", summary="Decline an order awaiting approval: it is cancelled",
             response_model=A.OrderView, responses=A.errors(403, 404, 409, 422, 503))
async def decline_order(order_id: str, body: DeclineIn, request: Request,
                        who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return await _by_approver(request, order_id, who, OrderWorkflow.decline, body, "decline")


@router.post("/orders/{order_id}/reorchestrate", summary="Support: re-source a stuck or rejected fulfillment",
             response_model=A.OrderView, responses=A.errors(403, 404, 409, 422, 503))
async def reorchestrate(order_id: str, body: ReorchestrateIn, request: Request,
                        who: Principal = Depends(STAFF)) -> dict[str, Any]:
    await _visible_order(request, order_id, who)
    await _update(request, order_id, OrderWorkflow.reorchestrate, body, "order is closed")
    return await _visible_order(request, order_id, who)


@router.post("/orders/{order_id}/returns", status_code=201, summary="Request a return within the return window",
             response_model=A.ReturnAnswer, responses=A.errors(403, 404, 409, 422, 503))
async def request_return(order_id: str, body: ReturnIn, request: Request,
                         who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    await _order_for_change(request, order_id, who)
    if body.node_id is not None:
        await _check_return_node(request, body)
    result = await _update(request, order_id, OrderWorkflow.request_return, body,
                           "the return window has closed for this order")
    return return_answer(result)


@router.post("/orders/{order_id}/exchanges", status_code=201, response_model=A.ExchangeAnswer,
             summary="Exchange delivered units for others: a return and a replacement order, linked",
             responses=A.errors(403, 404, 409, 422, 503),
             description="Even (the replacement waits for the returned units) or advance (it ships now; if the return "
                         "never arrives by the return window's end the customer is charged for it). The replacement is "
                         "sourced, promised and reserved like an order; a replacement without stock is 409 and nothing "
                         "changes. A price difference is charged on the replacement or refunded when the return is "
                         "received.")
async def request_exchange(order_id: str, body: ExchangeIn, request: Request,
                           who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    await _order_for_change(request, order_id, who)
    if body.node_id is not None:
        await _check_return_node(request, body)
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT sku, digital FROM skus WHERE sku = ANY(:s)"),
                                   {"s": sorted({l.sku for l in body.lines})})).all()
    known = {r.sku: r.digital for r in rows}
    problems = [f"unknown sku {l.sku}" for l in body.lines if l.sku not in known]
    problems += [f"a digital sku cannot replace a delivered unit: {l.sku}" for l in body.lines if known.get(l.sku)]
    if problems:
        raise HTTPException(422, "; ".join(sorted(set(problems))))
    result = await _update(request, order_id, OrderWorkflow.request_exchange, body,
                           "the return window has closed for this order")
    handle = request.app.state.temporal.get_workflow_handle(result.replacement_order_id)
    status = None
    try:
        placed = await asyncio.wait_for(handle.execute_update(OrderWorkflow.await_promise),
                                        timeout=request.app.state.settings.place_timeout_s)
        status = placed.status
    except (asyncio.TimeoutError, RPCError, WorkflowUpdateFailedError):
        pass  # the replacement runs all the same: its promise follows (GET /orders/{replacement_order_id})
    return {**result.model_dump(mode="json"), "replacement_status": status}


async def _check_return_node(request: Request, body: ReturnIn | ExchangeIn) -> None:
    """A return goes only to a node that takes returns: one with the returns capability, or a warehouse for
    what is shipped back."""
    async with request.app.state.db.engine.connect() as conn:
        node = (await conn.execute(text("SELECT type, capabilities, enabled FROM nodes WHERE node_id = :n"),
                                   {"n": body.node_id})).first()
    if node is None:
        raise HTTPException(422, f"unknown node {body.node_id}")
    if not takes_returns(node.type, node.capabilities or [], body.method) or not node.enabled:
        raise HTTPException(422, f"node {body.node_id} does not take {body.method.replace('_', ' ')} returns"
                                 + ("" if node.enabled else " (disabled)"))
