"""Delivery promise quotes (POST /promise) and the carrier calendars they count on."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timezone
from typing import Any, Optional

from prometheus_client import Histogram
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import Field
from sqlalchemy import text

from routing.sourcing import RoutingView, load_view, plan_request, tables_for
from api.index import DATABASE_READ, index_of, memo_seconds
import api.answers as A
from api.routes.ops import REGISTRY
from api.auth import ADMIN, ANY_ROLE, Principal, require
from api.routes.orders import line_problems, pack_of
from api.schemas import Body, CartLine
from models.messages import Address, Delivery, OrderLineIn, Plan, PlanLine, PlanRequest, Policy
from models.status import METHOD_CAPABILITY, DeliveryMethod, Role
from nodal.logging import get_logger
from promise import CARRIERS, SERVICES
from promise.carriers import national_closures
from promise.dates import COUNTER

router = APIRouter(tags=["promise"])
QUOTERS = require(Role.admin, Role.support, Role.client)


class PromiseIn(Body):
    channel: str = Field(min_length=1, max_length=64)
    destination: Address
    lines: list[CartLine] = Field(min_length=1, max_length=100)
    customer_tier: Optional[str] = Field(default=None, max_length=64)
    policy: Policy = Field(default_factory=Policy)  # not a default instance: pydantic deep-copies one per request
    requested_delivery_date: Optional[date] = Field(
        default=None, description="B2B: the day the customer wants it; shipped to arrive then, not before")
    methods: Optional[list[DeliveryMethod]] = Field(default=None, description="only these methods (default: all)")


def _z(at: datetime) -> str:
    """UTC as the order API writes it (…Z), so a quote and the order's promise compare equal."""
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _option(method: DeliveryMethod, plan: Plan, body: PromiseIn, release_at: datetime,
            packs: list[int]) -> Optional[dict[str, Any]]:
    """One quote line: what this method can deliver, by when, from where (None: nothing)."""
    got: dict[str, int] = {}
    for a in plan.allocations:
        for q in a.lines:
            got[q.line_id] = got.get(q.line_id, 0) + q.qty
    for q in plan.unfilled:
        if q.line_id in plan.backorder_dates:
            got[q.line_id] = got.get(q.line_id, 0) + q.qty
    for q in plan.digital:
        got[q.line_id] = got.get(q.line_id, 0) + q.qty
    if not plan.feasible or not got:
        return None
    dates = [a.promised_by for a in plan.allocations if a.promised_by] + [
        d for lid, d in plan.backorder_dates.items() if lid in got] + ([release_at] if plan.digital else [])
    if not dates:
        return None
    nodes = sorted({a.transfer_to or a.node_id for a in plan.allocations})  # where the customer collects
    ship_bys = [a.ship_by for a in plan.allocations if a.ship_by]
    # In the cart's units (whole packs available) and in eaches.
    lines = [{"line": i + 1, "sku": l.sku, "uom": l.uom, "qty": got.get(str(i + 1), 0) // pack, "requested": l.qty,
              "eaches": got.get(str(i + 1), 0), "requested_eaches": l.qty * pack}
             for i, (l, pack) in enumerate(zip(body.lines, packs))]
    return {
        "method": method.value, "node_id": nodes[0] if len(nodes) == 1 else None, "nodes": nodes,
        "promised_by": _z(max(dates)), "ship_by": _z(min(ship_bys)) if ship_bys else None,
        "carriers": sorted({f"{a.carrier}/{a.service}" for a in plan.allocations if a.carrier}),
        "lines_available": [l for l in lines if l["qty"]],
        "complete": all(l["qty"] >= l["requested"] for l in lines),
        "from_incoming_supply": bool(set(plan.backorder_dates) & set(got)),
    }


def _counters(view: RoutingView, body: PromiseIn, method: DeliveryMethod, lat: float, lon: float,
              radius_km: float, limit: int) -> list[str]:
    """The stores offering this counter service within the radius: those holding more of the cart first (the
    rest comes to them by transfer), then the stores mapped to the customer's postal code in their priority
    order, then the nearest."""
    mapped = view.net.service_areas.get(body.destination.postal_code, {})
    ranked = []
    for node_id, km in tables_for(view).near(METHOD_CAPABILITY[method].value, lat, lon, radius_km, view.net):
        covered = sum(min(view.net.available.get((node_id, l.sku), 0), l.qty) for l in body.lines)
        ranked.append((-covered, mapped.get(node_id, len(mapped) + 1), km, node_id))
    return [r[-1] for r in sorted(ranked)[:limit]]


@router.post("/promise", summary="The earliest date each delivery method can keep for a cart; nothing reserved",
             response_model=A.PromiseAnswer, responses=A.errors(403, 422))
async def promise(body: PromiseIn, request: Request, response: Response,
                  who: Principal = Depends(QUOTERS)) -> Response:
    if who.role == Role.client and who.channel != body.channel:
        raise HTTPException(403, f"this key quotes for channel {who.channel} only")
    app = request.app.state
    dest = body.destination
    ship = Delivery(method=DeliveryMethod.ship_standard, address=dest, pickup_node_id=None)
    now = datetime.now(timezone.utc)
    tier = who.buying_tier(body.customer_tier)

    def req(delivery: Delivery, packs: list[int]) -> PlanRequest:
        # Dated from the remorse window's end, as the order placed from this quote will be.
        # Every field given (no defaults copied) and the body's models as they are: validating these small models
        # in pydantic's core costs less than model_construct's Python loop, and a quote asks for up to nine plans.
        return PlanRequest(
            order_id="promise", channel=body.channel, customer_tier=tier,
            lines=[PlanLine(line_id=str(i + 1), sku=l.sku, qty=l.qty * pack, delivery=delivery,
                            exclude_nodes=[], due=None, pack=pack, complete=False)
                   for i, (l, pack) in enumerate(zip(body.lines, packs))],
            policy=body.policy, exclude_nodes=[], to_node=None, at=now, hold_id=None,
            release_at=now + app.settings.remorse_window, requested_delivery_date=body.requested_delivery_date)

    started = time.perf_counter()
    index = await index_of(app)
    fresh = index.freshness() if index is not None else DATABASE_READ
    # The view is read for the cart's SKUs and destination; its quantities do not matter yet.
    view = await load_view(app.db, req(ship, [1] * len(body.lines)), memo_seconds(app.settings, index), index)
    viewed = time.perf_counter()
    # The catalog and postal codes as the view read them: a quote checks its cart without another query.
    known = {sku: dict(rules.packs) for sku, rules in view.net.skus.items()}
    if problems := line_problems([OrderLineIn(sku=l.sku, qty=l.qty, uom=l.uom, unit_price=0, delivery=ship)
                                  for l in body.lines], known, view.coords, {}):
        raise HTTPException(422, "; ".join(problems))
    packs = [pack_of(known, l.sku, l.uom) for l in body.lines]
    lat, lon = (dest.lat, dest.lon) if dest.lat is not None and dest.lon is not None else view.coords[dest.postal_code]
    budget = app.settings.routing_budget_ms
    asks: list[tuple[DeliveryMethod, PlanRequest]] = []
    for method in body.methods or list(DeliveryMethod):
        if method in COUNTER:
            for node_id in _counters(view, body, method, lat, lon, app.settings.pickup_radius_km,
                                     app.settings.pickup_options):
                asks.append((method, req(Delivery(method=method, address=None, pickup_node_id=node_id), packs)))
        else:
            asks.append((method, req(Delivery(method=method, address=dest, pickup_node_id=None), packs)))
    # One after another: a plan waits on nothing but, rarely, a supply read (a task each would cost more than that).
    plans = [await plan_request(app.db, r, budget, view, explain=False) for _, r in asks]
    # Where a quote's time goes, for browser dev tools and bench/promise_bench.py, and /metrics.
    done = time.perf_counter()
    response.headers["Server-Timing"] = (f"view;dur={(viewed - started) * 1000:.2f}, "
                                         f"plans;dur={(done - viewed) * 1000:.2f};desc={len(asks)}")
    QUOTE_SECONDS.labels("view").observe(viewed - started)
    QUOTE_SECONDS.labels("plans").observe(done - viewed)
    options, unavailable = [], {}
    for (method, _), plan in zip(asks, plans):
        option = _option(method, plan, body, now + app.settings.remorse_window, packs)
        if option is not None:
            options.append(option)
        elif method.value not in unavailable:
            unavailable[method.value] = plan.reason or "no eligible node can serve any of it"
    served = {o["method"] for o in options}
    for method in body.methods or list(DeliveryMethod):
        if method in COUNTER and method.value not in served and method.value not in unavailable:
            unavailable[method.value] = f"no {method.value} node within {app.settings.pickup_radius_km:.0f} km"
    options.sort(key=lambda o: (not o["complete"], o["promised_by"], o["method"]))
    get_logger(channel=body.channel).info("promise.quoted", lines=len(body.lines), plans=len(asks),
                                          options=[o["method"] for o in options], unavailable=sorted(unavailable))
    # Sent as built: every value is already in its JSON form, and a quote is the busiest answer there is (the
    # response_model still documents it; the contract tests check the answers against it).
    return Response(json.dumps({
        "quoted_at": _z(now), "options": options,
        "unavailable": [{"method": m, "reason": why} for m, why in unavailable.items() if m not in served],
        "freshness": fresh.answer(now.timestamp())}), media_type="application/json", headers=dict(response.headers))


QUOTE_SECONDS = Histogram("nodal_promise_quote_seconds", "A delivery quote's time in this API process, by part: reading "
                          "the network and stock (view), planning every method (plans)", ["part"], registry=REGISTRY,
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))


class ClosureIn(Body):
    day: date
    reason: str = Field(default="", max_length=200)


@router.get("/carriers", summary="Carrier services the promise counts on: zones, pickup and delivery days, closures",
            response_model=A.CarrierList, responses=A.errors(403))
async def carriers(request: Request, _: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    today = datetime.now(timezone.utc).date()
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT carrier, day, reason FROM carrier_closures WHERE day >= :d"
                                        " ORDER BY carrier, day"), {"d": today})).all()
    holidays = sorted(d for y in (today.year, today.year + 1) for d in national_closures("US", y)
                      if d >= today.isoformat())
    return {"carriers": [{
        "carrier": c,
        "services": [{"method": m.value, "service": s.service, "pickup_weekdays": sorted(s.pickup_weekdays),
                      "delivery_weekdays": sorted(s.delivery_weekdays),
                      "zones": [{"up_to_km": None if km == float("inf") else km, "transit_days": d} for km, d in s.zones]}
                     for m, services in SERVICES.items() for s in services if s.carrier == c],
        "holidays": holidays,
        "closures": [{"day": r.day.isoformat(), "reason": r.reason} for r in rows if r.carrier == c],
    } for c in CARRIERS]}


@router.put("/carriers/{carrier}/closures", summary="Replace a carrier's own closures from today on",
            response_model=A.ClosuresSet, responses=A.errors(403, 404, 422))
async def put_closures(carrier: str, body: list[ClosureIn], request: Request, _: Principal = Depends(ADMIN)) -> dict:
    if carrier not in CARRIERS:
        raise HTTPException(404, f"no carrier {carrier}; known: {', '.join(CARRIERS)}")
    days = [c.day for c in body]
    if len(days) != len(set(days)):
        raise HTTPException(422, "each day may appear once")
    today = datetime.now(timezone.utc).date()
    if any(d < today for d in days):
        raise HTTPException(422, "closures are for today or later")
    async with request.app.state.db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM carrier_closures WHERE carrier = :c AND day >= :d"),
                           {"c": carrier, "d": today})
        if body:
            await conn.execute(text("INSERT INTO carrier_closures (carrier, day, reason, updated_at)"
                                    " VALUES (:c, :d, :r, now())"),
                               [{"c": carrier, "d": c.day, "r": c.reason} for c in body])
    return {"carrier": carrier, "closures": [{"day": c.day.isoformat(), "reason": c.reason} for c in sorted(
        body, key=lambda c: c.day)]}
