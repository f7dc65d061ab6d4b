"""Checkout holds: stock kept for a cart for a while (NODAL_HOLD_TTL), then converted by an order or expired."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import text

from routing.sourcing import load_view, plan_request
from api.index import index_of, memo_seconds
import api.answers as A
from api import idempotency
from api.auth import Principal, require
from api.routes.orders import check_lines, pack_of
from api.schemas import HoldCreate
from inventory import service
from models.messages import Delivery, OrderLineIn, PlanLine, PlanRequest, Policy
from models.status import DeliveryMethod, Role

router = APIRouter(tags=["holds"])
CLIENTS = require(Role.admin, Role.client)
CART_READERS = require(Role.admin, Role.support, Role.client)  # a partner has no business with carts


def _may_use(who: Principal, channel: str) -> None:
    if who.role == Role.client and who.channel != channel:
        raise HTTPException(403, f"this key holds stock for channel {who.channel} only")


@router.post("/holds", status_code=201, summary="Hold a cart's stock at checkout until it is ordered or expires",
             response_model=A.HoldView, responses=A.errors(403, 409, 422))
async def create_hold(body: HoldCreate, request: Request, who: Principal = Depends(CLIENTS)) -> dict[str, Any]:
    _may_use(who, body.channel)
    app = request.app.state
    delivery = Delivery(method=DeliveryMethod.ship_standard, address=body.destination)
    async with app.db.engine.connect() as conn:
        problems, known = await check_lines(conn, [OrderLineIn(sku=l.sku, qty=l.qty, uom=l.uom, unit_price=0,
                                                               delivery=delivery) for l in body.lines])
    if problems:
        raise HTTPException(422, "; ".join(problems))
    hold_id = "HOLD-" + secrets.token_hex(8)
    now = datetime.now(timezone.utc)
    expires_at = now + app.settings.hold_ttl
    req = PlanRequest(
        order_id=hold_id, channel=body.channel, at=now, policy=Policy(fill_or_kill=True),
        lines=[PlanLine(line_id=str(i + 1), sku=l.sku, qty=l.qty * pack, delivery=delivery, pack=pack)
               for i, l in enumerate(body.lines) for pack in [pack_of(known, l.sku, l.uom)]])
    # Planned on the availability index (a checkout is storefront traffic); the reservation below is the
    # database's conditional update, so a stale index can only cost a second, live, attempt — never an oversell.
    index = await index_of(app)
    for attempt in (index, None) if index is not None else (None,):
        view = await load_view(app.db, req, memo_seconds(app.settings, attempt) if attempt else 0.0, attempt)
        plan = await plan_request(app.db, req, view=view, explain=False)
        if not plan.feasible:
            if attempt is not None:
                continue
            raise HTTPException(409, f"cannot hold this cart: {plan.reason}")
        holds = [service.Hold(hold_id, l.line_id, a.node_id, l.sku, l.qty) for a in plan.allocations for l in a.lines]
        async with app.db.engine.begin() as conn:
            short = await service.reserve(conn, hold_id, holds, now, body.channel, expires_at)
            if short:
                await conn.rollback()
                if attempt is not None:
                    continue
                raise HTTPException(409, "cannot hold this cart: stock changed while holding, try again")
            await conn.execute(text("INSERT INTO checkout_holds (hold_id, channel, expires_at, created_at)"
                                    " VALUES (:h, :c, :x, now())"), dict(h=hold_id, c=body.channel, x=expires_at))
            answer = {"hold_id": hold_id, "channel": body.channel, "expires_at": expires_at.isoformat(),
                      "status": "active", "order_id": None,
                      "lines": [{"line_id": h.line_id, "sku": h.sku, "qty": h.qty, "node_id": h.node_id} for h in holds]}
            await idempotency.record(request, conn, answer)
        return answer
    raise AssertionError("unreachable: the live attempt answers or refuses")


async def hold_view(conn, hold_id: str) -> dict[str, Any] | None:
    h = (await conn.execute(text("SELECT * FROM checkout_holds WHERE hold_id = :h"), {"h": hold_id})).first()
    if h is None:
        return None
    rows = (await conn.execute(text(
        "SELECT line_id, sku, qty, node_id, status FROM reservations WHERE fulfillment_id = :h ORDER BY line_id"),
        {"h": hold_id})).all()
    held = [r for r in rows if r.status == "held"]
    if h.order_id:
        status = "converted"
    elif held and h.expires_at > datetime.now(timezone.utc):
        status = "active"
    elif held:
        status = "expiring"  # past its expiry, the next sweep releases it
    else:
        status = "expired" if h.expires_at <= datetime.now(timezone.utc) else "released"
    return {"hold_id": hold_id, "channel": h.channel, "expires_at": h.expires_at.isoformat(), "status": status,
            "order_id": h.order_id,
            "lines": [{"line_id": r.line_id, "sku": r.sku, "qty": r.qty, "node_id": r.node_id} for r in held]}


async def _visible_hold(conn, hold_id: str, who: Principal) -> dict[str, Any]:
    view = await hold_view(conn, hold_id)
    if view is None:
        raise HTTPException(404, f"no hold {hold_id}")
    _may_use(who, view["channel"])
    return view


@router.get("/holds/{hold_id}", summary="A checkout hold", response_model=A.HoldView,
            responses=A.errors(403, 404))
async def get_hold(hold_id: str, request: Request, who: Principal = Depends(CART_READERS)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        return await _visible_hold(conn, hold_id, who)


@router.delete("/holds/{hold_id}", summary="Give a cart's stock back now", response_model=A.HoldView,
               responses=A.errors(403, 404, 409))
async def release(hold_id: str, request: Request, who: Principal = Depends(CLIENTS)) -> dict[str, Any]:
    async with request.app.state.db.engine.begin() as conn:
        view = await _visible_hold(conn, hold_id, who)
        if view["status"] == "converted":
            raise HTTPException(409, f"hold {hold_id} became order {view['order_id']}")
        await service.release_hold(conn, hold_id, "hold_released")
        return await hold_view(conn, hold_id)
