"""What comes in from carriers (tracking scans), and what a customer may see of their own order (tracking)."""

from __future__ import annotations

import hmac
from typing import Any, Literal, Optional

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import text

import api.answers as A
from api.views import iso
from api.auth import Principal, require
from api.guard import RateLimiter
from api.temporal_errors import WorkflowClosed, run_update
from events.tracking import EFFECTS, Scan, record, restock_returned, token_matches, tracking_secret
from models.messages import ExceptionIn
from models.status import FulfillmentKind, Role
from workflows.store import WORKFLOW_OF

carriers_router = APIRouter(tags=["tracking"])
public_router = APIRouter(tags=["tracking"])  # no key: the customer proves the order is theirs
CARRIERS = require(Role.admin, Role.carrier)


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking: str = Field(min_length=1, max_length=64)
    event: Literal["in_transit", "out_for_delivery", "delivered", "exception", "returned_to_sender"]
    at: AwareDatetime = Field(description="when the carrier scanned it")
    reason: Optional[Literal["lost", "damaged", "refused"]] = Field(
        None, description="an exception's kind (lost when not given)")
    detail: Optional[dict[str, str]] = Field(None, max_length=20, description='e.g. {"location": "Newark, NJ"}; '
                                                                            'delivered: {"proof": "<reference>"}')


class ScanResult(A.Answer):
    tracking: str
    event: str
    at: A.Timestamp
    outcome: Literal["recorded", "duplicate", "unknown_tracking"]
    fulfillment_id: Optional[str]
    applied: Optional[str] = Field(description="what it did: delivered, exception, restocked (a parcel back at its "
                                               "sender after an exception); null: nothing")
    note: Optional[str] = Field(None, description="why it changed nothing, when it could have")


class ScansAnswer(A.Answer):
    results: list[ScanResult]


@carriers_router.post("/carriers/{carrier}/events", summary="Tracking scans from a carrier",
             description="Each scan is kept once (a repeat is `duplicate`) and goes on the order's timeline and out as "
                         "fulfillment.tracking, in whatever order they come. `delivered` completes the fulfillment (no "
                         "partner app needed); `exception` (lost, damaged, refused) and `returned_to_sender` end the "
                         "parcel and the order reships or refunds it by its policy.carrier_exception. A scan for a "
                         "parcel it no longer fits (delivered after an exception) is kept and changes nothing.",
             response_model=ScansAnswer, responses=A.errors(403, 422, 503))
async def carrier_events(request: Request, scans: list[ScanIn] = Body(..., min_length=1, max_length=1000),
                         carrier: str = Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$"),
                         who: Principal = Depends(CARRIERS)) -> dict[str, Any]:
    if who.role == Role.carrier and who.carrier != carrier:
        raise HTTPException(403, f"this key sends {who.carrier}'s scans only")
    given = [Scan(s.tracking, s.event, s.at, {**(s.detail or {}), **({"reason": s.reason or "lost"}
                                                                   if s.event == "exception" else {})}) for s in scans]
    async with request.app.state.db.engine.begin() as conn:
        outcomes = await record(conn, carrier, given)
    results = []
    for o in outcomes:
        applied, note = None, None
        # A repeat applies too: the first time may have been cut short after the scan was kept.
        if o.fulfillment_id and o.scan.event in EFFECTS:
            applied, note = await _apply(request, carrier, o)
        results.append({"tracking": o.scan.tracking, "event": o.scan.event, "at": o.scan.at.isoformat(),
                        "outcome": o.outcome, "fulfillment_id": o.fulfillment_id, "applied": applied, "note": note})
    return {"results": results}


async def _apply(request: Request, carrier: str, o) -> tuple[Optional[str], Optional[str]]:
    if o.kind != FulfillmentKind.delivery.value:
        return None, f"a {o.kind} is not a carrier's parcel"
    workflow = WORKFLOW_OF[FulfillmentKind.delivery]
    handle = request.app.state.temporal.get_workflow_handle(o.fulfillment_id)
    update_id = f"carrier:{carrier}:{o.scan.tracking}:{o.scan.event}"
    try:
        if o.scan.event == "delivered":
            result = await run_update(lambda: handle.execute_update(workflow.deliver, id=update_id))
            return ("delivered", None) if result.changed else (None, f"the fulfillment is {result.status.value}")
        reason = "returned_to_sender" if o.scan.event == "returned_to_sender" else o.scan.detail.get("reason", "lost")
        body = ExceptionIn(reason=reason, detail=o.scan.detail.get("location"), at=o.scan.at)
        await run_update(lambda: handle.execute_update(workflow.exception, body, id=update_id))
        return "exception", None
    except WorkflowClosed:
        note = "the fulfillment has ended"
    except HTTPException as e:
        if e.status_code != 409:
            raise
        note = str(e.detail)
    if o.scan.event == "returned_to_sender":
        # The parcel ended before (lost, damaged, refused) and has now come back: its units are the node's again.
        async with request.app.state.db.engine.begin() as conn:
            if await restock_returned(conn, o.order_id, o.fulfillment_id, o.node_id):
                return "restocked", None
    return None, note


# ---------------------------------------------------------------- customers
class TrackScan(A.Answer):
    event: str
    at: A.Timestamp
    location: Optional[str] = None


class TrackShipment(A.Answer):
    fulfillment_id: str
    status: str
    carrier: Optional[str]
    tracking: Optional[str]
    shipped_at: Optional[A.Timestamp]
    delivered_at: Optional[A.Timestamp]
    promised_by: Optional[A.Timestamp]
    scans: list[TrackScan]


class TrackPickup(A.Answer):
    fulfillment_id: str
    status: str
    store: str
    store_postal_code: str
    ready_at: Optional[A.Timestamp]
    hold_until: Optional[A.Timestamp]
    pickup_code: Optional[str] = Field(description="with the signed link from the confirmation only, while ready")


class TrackLine(A.Answer):
    line_id: str
    sku: str
    qty: int
    uom: str
    status: str


class TrackAnswer(A.Answer):
    order_id: str
    external_id: str
    status: str
    placed_at: A.Timestamp
    promised_by: Optional[A.Timestamp]
    delivered_at: Optional[A.Timestamp]
    lines: list[TrackLine]
    shipments: list[TrackShipment]
    pickups: list[TrackPickup]
    returns: list[dict[str, str]]



NOT_FOUND = "no order with this id for these details"


@public_router.get("/track/{order_id}", summary="A customer's own order: status, promise, shipments and their scans",
            description="Public. Give the email the order was placed with, or the `token` of the tracking link in the "
                        "order's confirmation; a wrong one is the same 404 as an unknown order. Rate-limited per client "
                        "address and per order (NODAL_TRACK_PER_MINUTE). The pickup code of a pickup that is ready "
                        "shows with the link's token only.",
            response_model=TrackAnswer, responses={**A.errors(404, 422), **A.PUBLIC})
async def track(request: Request, order_id: str = Path(max_length=64),
                email: Optional[str] = Query(None, max_length=320), token: Optional[str] = Query(None, max_length=64)
                ) -> dict[str, Any]:
    if not email and not token:
        raise HTTPException(422, "give the order's email or its tracking link's token")
    _limit(request, order_id)
    async with request.app.state.db.engine.connect() as conn:
        o = (await conn.execute(text("SELECT * FROM orders WHERE order_id = :o"), {"o": order_id})).first()
        if o is None:
            raise HTTPException(404, NOT_FOUND)
        by_link = bool(token) and token_matches(await tracking_secret(conn), order_id, token or "")
        by_email = bool(email) and bool(o.customer_email) and hmac.compare_digest(
            (o.customer_email or "").strip().lower().encode(), (email or "").strip().lower().encode())
        if not (by_link or by_email):
            raise HTTPException(404, NOT_FOUND)
        lines = (await conn.execute(text(
            "SELECT line_id, sku, qty, pack, uom, status FROM order_lines WHERE order_id = :o ORDER BY line_id"),
            {"o": order_id})).all()
        fulfillments = (await conn.execute(text(
            "SELECT f.*, n.name AS store, n.postal_code AS store_postal_code FROM fulfillments f"
            " JOIN nodes n ON n.node_id = f.node_id WHERE f.order_id = :o AND f.kind <> 'transfer'"
            " ORDER BY f.created_at, f.fulfillment_id"), {"o": order_id})).all()
        scans = (await conn.execute(text(
            "SELECT fulfillment_id, event, at, detail FROM carrier_scans WHERE order_id = :o ORDER BY at, id"),
            {"o": order_id})).all()
        returns = (await conn.execute(text("SELECT return_id, status FROM returns WHERE order_id = :o ORDER BY created_at"),
                                      {"o": order_id})).all()
    by_parcel: dict[str, list[dict[str, Any]]] = {}
    for s in scans:
        by_parcel.setdefault(s.fulfillment_id, []).append(
            {"event": s.event, "at": s.at.isoformat(), "location": (s.detail or {}).get("location")})
    shipments, pickups = [], []
    for f in fulfillments:
        if f.kind == FulfillmentKind.pickup.value:
            code = await _pickup_code(request, f.fulfillment_id) if by_link and f.status == "ready_for_pickup" else None
            pickups.append({"fulfillment_id": f.fulfillment_id, "status": f.status, "store": f.store,
                            "store_postal_code": f.store_postal_code, "ready_at": iso(f.ready_at),
                            "hold_until": iso(f.hold_until), "pickup_code": code})
        else:
            shipments.append({"fulfillment_id": f.fulfillment_id, "status": f.status, "carrier": f.carrier,
                              "tracking": f.tracking, "shipped_at": iso(f.shipped_at),
                              "delivered_at": iso(f.delivered_at), "promised_by": iso(f.promised_by),
                              "scans": by_parcel.get(f.fulfillment_id, [])})
    return {"order_id": o.order_id, "external_id": o.external_id, "status": o.status, "placed_at": o.created_at.isoformat(),
            "promised_by": iso(o.promised_by), "delivered_at": iso(o.delivered_at),
            "lines": [{"line_id": l.line_id, "sku": l.sku, "qty": l.qty // max(l.pack, 1), "uom": l.uom,
                       "status": l.status} for l in lines],
            "shipments": shipments, "pickups": pickups,
            "returns": [{"return_id": r.return_id, "status": r.status} for r in returns]}


def _limit(request: Request, order_id: str) -> None:
    """Per client address and per order: guessing an order's email stays slow, from anywhere."""
    state = request.app.state
    per_minute = state.settings.track_per_minute
    if per_minute <= 0:
        return
    if not hasattr(state, "track_limits"):
        burst = max(int(per_minute / 3), 3)
        state.track_limits = (RateLimiter(per_minute / 60, burst), RateLimiter(per_minute / 60, burst))
    by_address, by_order = state.track_limits
    address = request.client.host if request.client else "unknown"
    wait = max(by_address.wait(address), by_order.wait(order_id))
    if wait > 0:
        raise HTTPException(429, "too many tracking lookups; try again shortly",
                            headers={"Retry-After": str(max(int(wait + 0.999), 1))})


async def _pickup_code(request: Request, fulfillment_id: str) -> Optional[str]:
    try:
        return await request.app.state.temporal.get_workflow_handle(fulfillment_id).query("pickup_code")
    except Exception:  # the pickup ended meanwhile, or Temporal is busy: the notification still has it
        return None
