"""Routing rules: versioned, stored in PostgreSQL; every routing decision names the version it used."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import text

from datetime import datetime, timezone

from pydantic import AwareDatetime, Field

from routing.sourcing import plan_request, rules_row
import api.answers as A
from api.auth import ADMIN, STAFF, Principal, require
from api.routes.inventory import _known
from api.routes.orders import _lines, check_lines
from api.schemas import Body
from models.messages import Delivery, OrderLineIn, PlanLine, PlanRequest, Policy, UnitOfMeasure
from models.status import Role
from routing.rules import RoutingRules
from workflows.bid_prices import BID_PRICE_SCHEDULE

router = APIRouter(tags=["routing"])


def _view(row) -> dict[str, Any]:
    return {"version": row.version, "rules": row.rules, "actor": row.actor, "created_at": row.created_at.isoformat()}


@router.get("/routing-rules", summary="The routing rules in force (or an earlier version)", response_model=A.RulesView,
            responses=A.errors(403, 404, 422))
async def get_rules(request: Request, _: Principal = Depends(STAFF),
                    version: Optional[int] = Query(None, ge=1)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        row = await rules_row(conn, version)
    if row is None:
        if version:
            raise HTTPException(404, f"no routing rules version {version}")
        return {"version": 0, "rules": RoutingRules().model_dump(mode="json"), "actor": None, "created_at": None}
    return _view(row)


@router.put("/routing-rules", summary="Replace the routing rules: a new version, in force for the next decision",
            response_model=A.RulesView, responses=A.errors(403, 409, 422))
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
    uom: UnitOfMeasure = "each"
    delivery: Delivery


class SimulateIn(Body):
    channel: str = Field(min_length=1, max_length=64)
    customer_tier: Optional[str] = Field(default=None, max_length=32)
    lines: list[SimulateLine] = Field(min_length=1, max_length=5000)
    policy: Policy = Policy()
    exclude_nodes: list[str] = []


@router.post("/routing/simulate", summary="Dry-run routing for an order: candidates, costs and why each lost;"
             " nothing is reserved", response_model=A.Simulated, responses=A.errors(403, 422))
async def simulate(body: SimulateIn, request: Request,
                   who: Principal = Depends(require(Role.admin, Role.support, Role.client))) -> dict[str, Any]:
    if who.role == Role.client and who.channel != body.channel:
        raise HTTPException(403, f"this key simulates orders for channel {who.channel} only")
    order_lines = [OrderLineIn(line_id=l.line_id, sku=l.sku, qty=l.qty, uom=l.uom, unit_price=0, delivery=l.delivery)
                   for l in body.lines]
    async with request.app.state.db.engine.connect() as conn:
        problems, known = await check_lines(conn, order_lines)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    lines = _lines(order_lines, known)
    plan = await plan_request(request.app.state.db, PlanRequest(
        order_id="simulation", channel=body.channel, customer_tier=body.customer_tier,
        lines=[PlanLine(line_id=l.line_id, sku=l.sku, qty=l.qty, delivery=l.delivery, pack=l.pack) for l in lines],
        policy=body.policy, exclude_nodes=body.exclude_nodes, at=datetime.now(timezone.utc)),
        request.app.state.settings.routing_budget_ms)
    return {"simulated": True, "reserved": False, **plan.model_dump(mode="json", exclude={"supply_claims"})}


class ForecastEntryIn(Body):
    postal_code: str = Field(min_length=1, max_length=32)
    skus: list[str] = Field(min_length=1, max_length=100, description="a basket: one unit of each SKU")
    expected: float = Field(ge=0, le=1e9, description="orders of this basket expected over the horizon")


class ForecastIn(Body):
    as_of: Optional[AwareDatetime] = Field(default=None, description="start of the horizon (default: now)")
    horizon_days: int = Field(ge=1, le=366)
    entries: list[ForecastEntryIn] = Field(max_length=200_000)


def _forecast_view(row, entries: Optional[list] = None) -> dict[str, Any]:
    view = {"version": row.version, "as_of": row.as_of.isoformat(), "horizon_days": row.horizon_days,
            "actor": row.actor, "created_at": row.created_at.isoformat()}
    if entries is not None:
        view["entries"] = [{"postal_code": e.postal_code, "skus": list(e.skus), "expected": e.expected}
                           for e in entries]
    return view


@router.put("/forecast", summary="Replace the demand forecast routing prices scarce stock from: a new version",
            response_model=A.ForecastSet, responses=A.errors(403, 422))
async def put_forecast(body: ForecastIn, request: Request, who: Principal = Depends(ADMIN)) -> dict[str, Any]:
    postal = sorted({e.postal_code for e in body.entries})
    skus = sorted({s for e in body.entries for s in e.skus})
    async with request.app.state.db.engine.begin() as conn:
        known_postal = await _known(conn, "postal_codes", "postal_code", postal)
        known_skus = await _known(conn, "skus", "sku", skus)
        problems = []
        if unknown := [p for p in postal if p not in known_postal]:
            problems.append(f"postal codes without coordinates: {', '.join(unknown[:20])}")
        if unknown := [s for s in skus if s not in known_skus]:
            problems.append(f"unknown SKUs: {', '.join(unknown[:20])}")
        if dupes := [i for i, e in enumerate(body.entries) if len(set(e.skus)) != len(e.skus)]:
            problems.append(f"entries {dupes[:20]} repeat a SKU in one basket")
        if problems:
            raise HTTPException(422, "; ".join(problems))
        await conn.execute(text("LOCK TABLE demand_forecasts IN SHARE ROW EXCLUSIVE MODE"))
        version = (await conn.execute(text("SELECT COALESCE(MAX(version), 0) + 1 FROM demand_forecasts"))).scalar_one()
        row = (await conn.execute(text(
            "INSERT INTO demand_forecasts (version, as_of, horizon_days, actor) VALUES (:v, :a, :h, :who)"
            " RETURNING version, as_of, horizon_days, actor, created_at"),
            {"v": version, "a": body.as_of or datetime.now(timezone.utc), "h": body.horizon_days,
             "who": who.key_id})).first()
        if body.entries:
            await conn.execute(text(
                "INSERT INTO demand_forecast_entries (version, entry, postal_code, skus, expected)"
                " VALUES (:v, :i, :p, :s, :e)"),
                [{"v": version, "i": i, "p": e.postal_code, "s": sorted(e.skus), "e": e.expected}
                 for i, e in enumerate(body.entries)])
    # Re-price now rather than at the next scheduled run; with Temporal away the schedule catches up.
    try:
        await request.app.state.temporal.get_schedule_handle(BID_PRICE_SCHEDULE).trigger()
        refresh = "triggered"
    except Exception:
        refresh = "at the next scheduled run"
    return {**_forecast_view(row), "entries": len(body.entries), "bid_price_refresh": refresh}


@router.get("/forecast", summary="The demand forecast in force, with its entries", response_model=A.ForecastView,
            responses=A.errors(403, 404))
async def get_forecast(request: Request, _: Principal = Depends(STAFF)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT version, as_of, horizon_days, actor, created_at FROM demand_forecasts"
            " ORDER BY version DESC LIMIT 1"))).first()
        if row is None:
            raise HTTPException(404, "no demand forecast has been set")
        entries = (await conn.execute(text(
            "SELECT postal_code, skus, expected FROM demand_forecast_entries WHERE version = :v ORDER BY entry"),
            {"v": row.version})).all()
    return _forecast_view(row, entries)


@router.get("/bid-prices", summary="What one unit taken now at a node is expected to cost later orders",
            response_model=A.BidPrices, responses=A.errors(403, 422))
async def get_bid_prices(request: Request, _: Principal = Depends(STAFF),
                         sku: Optional[str] = Query(None, max_length=64),
                         node_id: Optional[str] = Query(None, max_length=64)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT node_id, sku, price, forecast_version, computed_at FROM bid_prices"
            " WHERE (CAST(:s AS varchar) IS NULL OR sku = :s) AND (CAST(:n AS varchar) IS NULL OR node_id = :n)"
            " ORDER BY sku, node_id LIMIT 10000"), {"s": sku, "n": node_id})).all()
    return {"prices": [{"node_id": r.node_id, "sku": r.sku, "price": round(r.price, 4),
                        "forecast_version": r.forecast_version, "computed_at": r.computed_at.isoformat()}
                       for r in rows]}
