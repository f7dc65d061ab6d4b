"""Routing rules: versioned, stored in PostgreSQL; every routing decision names the version it used."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import text

from datetime import datetime, timezone

from pydantic import Field

from activities.routing import plan_request, rules_row
from api.auth import ADMIN, STAFF, Principal, require
from api.routes.orders import _lines, validate_lines
from api.schemas import Body
from models.messages import Delivery, OrderLineIn, PlanLine, PlanRequest, Policy
from models.status import Role
from routing.rules import RoutingRules

router = APIRouter(tags=["routing"])


def _view(row) -> dict[str, Any]:
    return {"version": row.version, "rules": row.rules, "actor": row.actor, "created_at": row.created_at.isoformat()}


@router.get("/routing-rules", summary="The routing rules in force (or an earlier version)")
async def get_rules(request: Request, _: Principal = Depends(STAFF),
                    version: Optional[int] = Query(None, ge=1)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        row = await rules_row(conn, version)
    if row is None:
        if version:
            raise HTTPException(404, f"no routing rules version {version}")
        return {"version": 0, "rules": RoutingRules().model_dump(mode="json"), "actor": None, "created_at": None}
    return _view(row)


@router.put("/routing-rules", summary="Replace the routing rules: a new version, in force for the next decision")
async def put_rules(body: RoutingRules, request: Request, who: Principal = Depends(ADMIN),
                    expected_version: Optional[int] = Query(
                        None, ge=0, description="refuse (409) unless this is the version in force")) -> dict[str, Any]:
    async with request.app.state.db.engine.begin() as conn:
        # One writer at a time, so versions never collide and expected_version means what it says.
        await conn.execute(text("LOCK TABLE routing_rules IN SHARE ROW EXCLUSIVE MODE"))
        current = (await conn.execute(text("SELECT COALESCE(MAX(version), 0) FROM routing_rules"))).scalar_one()
        if expected_version is not None and expected_version != current:
            raise HTTPException(409, f"routing rules are at version {current}, not {expected_version}")
        row = (await conn.execute(text(
            "INSERT INTO routing_rules (version, rules, actor) VALUES (:v, CAST(:r AS jsonb), :a)"
            " RETURNING version, rules, actor, created_at"),
            {"v": current + 1, "r": json.dumps(body.model_dump(mode="json")), "a": who.key_id})).first()
    return _view(row)


class SimulateLine(Body):
    line_id: Optional[str] = Field(default=None, min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(gt=0, le=100_000)
    delivery: Delivery


class SimulateIn(Body):
    channel: str = Field(min_length=1, max_length=64)
    customer_tier: Optional[str] = Field(default=None, max_length=32)
    lines: list[SimulateLine] = Field(min_length=1, max_length=5000)
    policy: Policy = Policy()
    exclude_nodes: list[str] = []


@router.post("/routing/simulate", summary="Dry-run routing for an order: candidates, costs and why each lost;"
             " nothing is reserved")
async def simulate(body: SimulateIn, request: Request,
                   who: Principal = Depends(require(Role.admin, Role.support, Role.client))) -> dict[str, Any]:
    if who.role == Role.client and who.channel != body.channel:
        raise HTTPException(403, f"this key simulates orders for channel {who.channel} only")
    order_lines = [OrderLineIn(line_id=l.line_id, sku=l.sku, qty=l.qty, unit_price=0, delivery=l.delivery)
                   for l in body.lines]
    async with request.app.state.db.engine.connect() as conn:
        problems = await validate_lines(conn, order_lines)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    lines = _lines(order_lines)
    plan = await plan_request(request.app.state.db, PlanRequest(
        order_id="simulation", channel=body.channel, customer_tier=body.customer_tier,
        lines=[PlanLine(line_id=l.line_id, sku=l.sku, qty=l.qty, delivery=l.delivery) for l in lines],
        policy=body.policy, exclude_nodes=body.exclude_nodes, at=datetime.now(timezone.utc)),
        request.app.state.settings.routing_budget_ms)
    return {"simulated": True, "reserved": False, **plan.model_dump(mode="json", exclude={"supply_claims"})}
