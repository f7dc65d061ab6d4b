"""The network and catalog: nodes, service areas (store mapping), SKUs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from routing.store import load_scorecards, local_day, used_this_hour
from routing.sourcing import load_rules
from routing.rules import RoutingRules
from routing.scorecard import Scorecard
from inventory.service import apply_safety_defaults
import api.answers as A
from api.auth import ADMIN, ANY_ROLE, Principal
from api.schemas import NodeIn, NodePatch, ServiceAreaIn, SkuIn
from models.tables import Node, PostalCode, ServiceArea, Sku
from models.status import Role
from nodal.durations import parse_duration

router = APIRouter(tags=["network"])


def _node_row(node_id: str, body: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"node_id": node_id}
    for k, v in body.items():
        if k == "capacity":
            for limit in ("units_per_day", "orders_per_day", "units_per_hour"):  # a PATCH: only the limits it names
                if not v or limit in v:
                    row[limit] = v[limit] if v else None
        elif k == "processing_time":
            row["processing_time_minutes"] = int(parse_duration(v).total_seconds() // 60)
        elif k == "calendar":
            # A PUT sends the whole calendar; a PATCH only the keys it changes (merged into the stored one).
            row["calendar"] = {key: [str(h) for h in value] if key == "holidays" else value
                               for key, value in v.items()}
        elif k == "capabilities":
            row[k] = [str(c) for c in v]
        elif k == "type":
            row[k] = str(v)
        else:
            row[k] = v
    row["updated_at"] = datetime.now(timezone.utc)
    return row


async def _node_view(conn, node_id: str, cards: Optional[dict[str, Scorecard]] = None,
                     rules: Optional[RoutingRules] = None, who: Optional[Principal] = None) -> dict[str, Any]:
    """One node; ``cards`` and ``rules`` when the caller already loaded them for many nodes. The partner
    scorecard is staff's and the node's own partner's to read (null for everyone else)."""
    n = (await conn.execute(text("SELECT * FROM nodes WHERE node_id = :n"), {"n": node_id})).first()
    if n is None:
        raise HTTPException(404, f"no node {node_id}")
    day = local_day(n.timezone, datetime.now(timezone.utc))
    used, orders = (await conn.execute(text(
        "SELECT COALESCE(SUM(qty), 0), COUNT(DISTINCT fulfillment_id) FROM reservations"
        " WHERE node_id = :n AND capacity_day = :d AND status IN ('held', 'committed')"),
        {"n": node_id, "d": day})).one()
    hour = (await used_this_hour(conn, [node_id])).get(node_id, 0)
    counts = dict((await conn.execute(text(
        "SELECT status, COUNT(*) FROM fulfillments WHERE node_id = :n GROUP BY status"), {"n": node_id})).all())
    scored = who is None or who.role in (Role.admin, Role.support) or (who.role == Role.partner
                                                                       and who.node_id == node_id)
    if scored and cards is None:
        cards = await load_scorecards(conn, [node_id])
    if scored and rules is None:
        _, rules = await load_rules(conn)
    return {
        "node_id": n.node_id, "name": n.name, "type": n.type, "lat": n.lat, "lon": n.lon,
        "postal_code": n.postal_code, "capabilities": n.capabilities, "enabled": n.enabled,
        "capacity": {"units_per_day": n.units_per_day, "used_today": int(used),
                     "orders_per_day": n.orders_per_day, "orders_today": int(orders),
                     "units_per_hour": n.units_per_hour, "used_this_hour": int(hour)},
        "handling_cost": f"{n.handling_cost:.2f}", "processing_time": f"{n.processing_time_minutes}m",
        "cutoff_time": n.cutoff_time, "timezone": n.timezone, "calendar": n.calendar, "ships_whole": n.ships_whole,
        "scorecard": {**cards.get(node_id, Scorecard()).view(rules.scorecard_floors, rules.scorecard_min_fulfillments),
                      "by_status": counts} if scored else None,
    }


@router.put("/nodes/{node_id}", summary="Create or replace a node", response_model=A.NodeView, responses=A.errors(403, 422))
async def put_node(node_id: str, body: NodeIn, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    if not node_id or len(node_id) > 64:
        raise HTTPException(422, "node_id must be 1 to 64 characters")
    row = _node_row(node_id, body.model_dump(mode="json"))
    stmt = insert(Node.__table__).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=["node_id"], set_={k: stmt.excluded[k] for k in row if k != "node_id"})
    async with request.app.state.db.engine.begin() as conn:
        await conn.execute(stmt)
        view = await _node_view(conn, node_id)
    return view


@router.patch("/nodes/{node_id}", summary="Change some fields of a node, e.g. {enabled: false}", response_model=A.NodeView,
              responses=A.errors(403, 404, 422))
async def patch_node(node_id: str, body: NodePatch, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    changes = body.model_dump(mode="json", exclude_unset=True)
    if not changes:
        raise HTTPException(422, "nothing to change")
    # Only the capacity may be cleared (no daily limit); every other field keeps a value.
    if nulls := sorted(k for k, v in changes.items() if v is None and k not in ("capacity", "ships_whole")):
        raise HTTPException(422, f"{', '.join(nulls)} cannot be null: leave a field out to keep it")
    row = _node_row(node_id, changes)
    async with request.app.state.db.engine.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in row if k != "node_id")
        for k in ("capabilities", "calendar"):
            if k in row:
                sets = sets.replace(f"{k} = :{k}", f"{k} = COALESCE({k}, '{{}}'::jsonb) || CAST(:{k} AS jsonb)"
                                    if k == "calendar" else f"{k} = CAST(:{k} AS jsonb)")
                row[k] = json.dumps(row[k])
        res = await conn.execute(text(f"UPDATE nodes SET {sets} WHERE node_id = :node_id RETURNING node_id"), row)
        if res.first() is None:
            raise HTTPException(404, f"no node {node_id}")
        view = await _node_view(conn, node_id)
    return view


@router.get("/nodes", summary="Every node", response_model=A.NodeList, responses=A.errors(403))
async def list_nodes(request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        ids = [r.node_id for r in (await conn.execute(text("SELECT node_id FROM nodes ORDER BY node_id"))).all()]
        cards, (_, rules) = await load_scorecards(conn), await load_rules(conn)
        return {"nodes": [await _node_view(conn, i, cards, rules, who) for i in ids]}


@router.get("/nodes/{node_id}", summary="A node with today's used capacity and its partner scorecard",
            response_model=A.NodeView, responses=A.errors(403, 404))
async def get_node(node_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        return await _node_view(conn, node_id, who=who)


@router.put("/service-areas", summary="Store mapping: postal code → nodes by priority (bulk upsert)",
            response_model=A.ServiceAreasAnswer, responses=A.errors(403, 422))
async def put_service_areas(body: list[ServiceAreaIn], request: Request, _: Principal = Depends(ADMIN)) -> dict:
    node_ids = sorted({n.node_id for a in body for n in a.nodes})
    async with request.app.state.db.engine.begin() as conn:
        known = {r.node_id for r in (await conn.execute(
            text("SELECT node_id FROM nodes WHERE node_id = ANY(:n)"), {"n": node_ids})).all()}
        missing = [n for n in node_ids if n not in known]
        if missing:
            raise HTTPException(422, f"unknown nodes: {', '.join(missing)}")
        coords = [dict(postal_code=a.postal_code, lat=a.lat, lon=a.lon) for a in body
                  if a.lat is not None and a.lon is not None]
        if coords:
            stmt = insert(PostalCode.__table__).values(coords)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["postal_code"], set_={"lat": stmt.excluded.lat, "lon": stmt.excluded.lon}))
        codes = [a.postal_code for a in body]
        await conn.execute(text("DELETE FROM service_areas WHERE postal_code = ANY(:p)"), {"p": codes})
        rows = [dict(postal_code=a.postal_code, node_id=n.node_id, priority=n.priority) for a in body for n in a.nodes]
        if rows:
            await conn.execute(insert(ServiceArea.__table__).values(rows))
    return {"postal_codes": len(body), "mappings": len(rows)}


@router.get("/service-areas/{postal_code}", summary="The nodes serving a postal code, by priority",
            response_model=A.ServiceAreaView, responses=A.errors(403))
async def get_service_area(postal_code: str, request: Request, _: Principal = Depends(ANY_ROLE)) -> dict:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT node_id, priority FROM service_areas WHERE postal_code = :p ORDER BY priority, node_id"),
            {"p": postal_code})).all()
    return {"postal_code": postal_code, "nodes": [{"node_id": r.node_id, "priority": r.priority} for r in rows]}


@router.put("/skus/{sku}", summary="Create or replace a SKU", response_model=A.SkuView, responses=A.errors(403, 422))
async def put_sku(sku: str, body: SkuIn, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    if not sku or len(sku) > 64:
        raise HTTPException(422, "sku must be 1 to 64 characters")
    row = {"sku": sku, **body.model_dump(mode="json"), "updated_at": datetime.now(timezone.utc)}
    row["preorder_release_date"] = body.preorder_release_date
    row["pack_sizes"] = body.pack_sizes.model_dump(exclude_none=True)
    stmt = insert(Sku.__table__).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=["sku"], set_={k: stmt.excluded[k] for k in row if k != "sku"})
    async with request.app.state.db.engine.begin() as conn:
        await conn.execute(stmt)
        await apply_safety_defaults(conn, sku=sku)  # its category may have changed
    return {"sku": sku, **body.model_dump(mode="json"), "pack_sizes": row["pack_sizes"]}


@router.get("/skus/{sku}", summary="A SKU", response_model=A.SkuView, responses=A.errors(403, 404))
async def get_sku(sku: str, request: Request, _: Principal = Depends(ANY_ROLE)) -> dict:
    async with request.app.state.db.engine.connect() as conn:
        r = (await conn.execute(text("SELECT * FROM skus WHERE sku = :s"), {"s": sku})).first()
    if r is None:
        raise HTTPException(404, f"no sku {sku}")
    return {"sku": r.sku, "name": r.name, "weight_kg": r.weight_kg, "oversized": r.oversized, "hazmat": r.hazmat,
            "digital": r.digital, "ship_alone": r.ship_alone,
            "preorder_release_date": r.preorder_release_date.isoformat() if r.preorder_release_date else None,
            "allowed_node_types": r.allowed_node_types, "category": r.category,
            "low_stock_threshold": r.low_stock_threshold, "pack_sizes": r.pack_sizes or {}}
