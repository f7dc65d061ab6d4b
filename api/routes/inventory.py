"""Inventory feeds (snapshots, adjustments) and available-to-sell."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from sqlalchemy import text
from temporalio.service import RPCError

import api.answers as A
from api import idempotency
from api.auth import ADMIN, ANY_ROLE, STAFF, Principal, require
from api.schemas import (
    AdjustmentIn, ChannelViewIn, InspectIn, ProtectedIn, SafetyStockDefaultsIn, SnapshotIn, SupplyIn,
)
from inventory import service
from inventory.arithmetic import ATS_SQL, channel_ats_sql, protected_for_others_sql, stock_level_sql
from inventory.channels import load_channel_view
from api.index import DATABASE_READ, index_of, memo_seconds
from api.processes import start_feeds
from api.stock import stock_answer
from nodal.db import LazyConnection
from events.feeds import STOCK_CHANNEL, Feed, channel_available
from nodal.logging import get_logger
from models.status import NATIONAL_NODE_TYPES, Role

router = APIRouter(tags=["inventory"])
FEEDERS = require(Role.admin, Role.partner)
CHANNEL_READERS = require(Role.admin, Role.support, Role.client)  # a client: its own channel


async def _known(conn, table: str, key: str, values: list[str]) -> set[str]:
    rows = await conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} = ANY(:v)"), {"v": values})
    return {r[0] for r in rows}


async def _check_feed(conn, who: Principal, items: list, what: str) -> None:
    """A partner feeds only its own node; every node and SKU in a feed must exist (403 / 422, nothing applied)."""
    for item in items:
        if not who.can_touch_node(item.node_id):
            raise HTTPException(403, f"this key may not {what} node {item.node_id}")
    await _require_known(conn, {i.node_id for i in items}, {i.sku for i in items})


async def _require_known(conn, node_ids: set[str], skus: set[str]) -> None:
    missing_nodes = sorted(node_ids - await _known(conn, "nodes", "node_id", sorted(node_ids)))
    missing_skus = sorted(skus - await _known(conn, "skus", "sku", sorted(skus)))
    if missing_nodes or missing_skus:
        raise HTTPException(422, "unknown " + "; ".join(
            x for x in (f"nodes: {', '.join(missing_nodes)}" if missing_nodes else "",
                        f"skus: {', '.join(missing_skus)}" if missing_skus else "") if x))


@router.put("/inventory/{node_id}", summary="Full snapshot of a node's stock; an older as_of is ignored",
            response_model=A.SnapshotAnswer, responses=A.errors(403, 404, 422))
async def put_snapshot(node_id: str, body: SnapshotIn, request: Request, who: Principal = Depends(FEEDERS)) -> dict:
    if not who.can_touch_node(node_id):
        raise HTTPException(403, "this key may not feed another node's stock")
    skus = sorted({i.sku for i in body.items})
    if len(skus) != len(body.items):
        raise HTTPException(422, "each sku may appear once in a snapshot")
    async with request.app.state.db.engine.begin() as conn:
        if not await _known(conn, "nodes", "node_id", [node_id]):
            raise HTTPException(404, f"no node {node_id}")
        missing = sorted(set(skus) - await _known(conn, "skus", "sku", skus))
        if missing:
            raise HTTPException(422, f"unknown skus: {', '.join(missing)}")
        applied, ignored = [], []
        for item in sorted(body.items, key=lambda i: i.sku):
            ok = await service.set_snapshot(conn, node_id, item.sku, item.on_hand, item.safety_stock, body.as_of,
                                            actor=who.key_id)
            (applied if ok else ignored).append(item.sku)
    return {"node_id": node_id, "as_of": body.as_of.isoformat(), "applied": len(applied),
            "ignored_older": ignored}


@router.post("/inventory/adjustments", summary="Stock deltas, idempotent by event_id", response_model=A.AdjustmentsAnswer,
             responses=A.errors(403, 422))
async def post_adjustments(body: list[AdjustmentIn], request: Request, who: Principal = Depends(FEEDERS)) -> dict:
    async with request.app.state.db.engine.begin() as conn:
        await _check_feed(conn, who, body, "adjust")
        applied, duplicates = 0, []
        for a in sorted(body, key=lambda a: (a.node_id, a.sku, a.event_id)):
            if await service.adjust(conn, a.node_id, a.sku, a.delta, a.reason,
                                    service.feed_event_id(a.node_id, a.event_id), actor=who.key_id):
                applied += 1
            else:
                duplicates.append(a.event_id)
        answer = {"applied": applied, "duplicates": duplicates}
        await idempotency.record(request, conn, answer)
    await wake_backorders(request, {a.sku for a in body if a.delta > 0 and a.event_id not in duplicates})
    return answer


@router.get("/inventory/{node_id}", summary="A node's positions", response_model=A.InventoryView, responses=A.errors(403))
async def get_inventory(node_id: str, request: Request, who: Principal = Depends(ANY_ROLE)) -> dict:
    if who.role == Role.partner and who.node_id != node_id:
        raise HTTPException(403, "this key reads its own node only")
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            f"SELECT sku, on_hand, reserved, safety_stock, {ATS_SQL} AS available, damaged, pending_inspection, as_of"
            " FROM inventory_positions WHERE node_id = :n ORDER BY sku"), {"n": node_id})).all()
        inbound = dict((await conn.execute(text(
            "SELECT l->>'sku', SUM(CAST(l->>'qty' AS integer)) FROM fulfillments f,"
            " jsonb_array_elements(CAST(f.lines AS jsonb)) l"
            " WHERE f.to_node_id = :n AND f.status = 'in_transit' GROUP BY 1"), {"n": node_id})).all())
    items = [{"sku": r.sku, "on_hand": r.on_hand, "reserved": r.reserved, "safety_stock": r.safety_stock,
              "available": r.available, "damaged": r.damaged, "pending_inspection": r.pending_inspection,
              "in_transit": inbound.pop(r.sku, 0), "as_of": r.as_of.isoformat() if r.as_of else None} for r in rows]
    items += [{"sku": sku, "on_hand": 0, "reserved": 0, "safety_stock": 0, "available": 0, "damaged": 0,
               "pending_inspection": 0, "in_transit": qty, "as_of": None} for sku, qty in sorted(inbound.items())]
    return {"node_id": node_id, "items": items}


@router.post("/inventory/{node_id}/{sku}/inspect", summary="Units pending inspection found sellable or damaged",
             response_model=A.InspectAnswer, responses=A.errors(403, 409, 422))
async def inspect(node_id: str, sku: str, body: InspectIn, request: Request, who: Principal = Depends(FEEDERS)) -> dict:
    if not who.can_touch_node(node_id):
        raise HTTPException(403, "this key may not inspect another node's stock")
    async with request.app.state.db.engine.begin() as conn:
        try:
            applied = await service.inspect(conn, node_id, sku, body.qty, body.disposition,
                                            service.feed_event_id(node_id, body.event_id), who.key_id)
        except ValueError as e:
            await conn.rollback()
            raise HTTPException(409, str(e))
        answer = {"node_id": node_id, "sku": sku, "applied": applied}
        await idempotency.record(request, conn, answer)
    return answer


# The whole answer is built by PostgreSQL as JSON in one statement: a 5-SKU request over a national network
# is a few hundred node rows, which cost more to turn into Python objects than to read.
_AVAILABILITY_SQL = """
WITH want AS (
  SELECT sku, ord FROM unnest(CAST(:skus AS varchar[])) WITH ORDINALITY AS w(sku, ord)
), eligible AS MATERIALIZED (
  -- The nodes this channel sells from for this destination, resolved once (tens of a few hundred).
  SELECT n.node_id FROM nodes n
  WHERE n.enabled AND NOT (n.node_id = ANY(CAST(:excluded AS varchar[])))
    AND (cardinality(CAST(:types AS varchar[])) = 0 OR n.type = ANY(CAST(:types AS varchar[]))){area}
), pos AS MATERIALIZED (
  SELECT p.sku, p.node_id, p.on_hand, p.reserved, p.safety_stock, {ats} AS available
  FROM inventory_positions p
  WHERE p.sku = ANY(CAST(:skus AS varchar[])) AND EXISTS (SELECT 1 FROM eligible e WHERE e.node_id = p.node_id)
), per_sku AS (
  SELECT w.ord, w.sku, COALESCE(SUM(pos.available), 0) AS available,
         COALESCE(json_agg(json_build_object('node_id', pos.node_id, 'on_hand', pos.on_hand,
                                             'reserved', pos.reserved, 'safety_stock', pos.safety_stock,
                                             'available', pos.available) ORDER BY pos.node_id)
                  FILTER (WHERE pos.node_id IS NOT NULL), '[]') AS nodes
  FROM want w LEFT JOIN pos ON pos.sku = w.sku GROUP BY w.ord, w.sku
)
SELECT CAST(json_build_object('postal_code', CAST(:pc AS varchar), 'channel', CAST(:channel AS varchar), 'skus',
  COALESCE(json_agg(json_build_object(
    'sku', x.sku, 'available', x.available, 'nodes', x.nodes,
    'stock_level', {level},
    'preorder_release_date', s.preorder_release_date,
    -- Supply is never stock; ``unclaimed`` is what is left for new backorders and preorders.
    'incoming', COALESCE((SELECT json_agg(json_build_object(
        'node_id', i.node_id, 'qty', i.qty, 'eta', i.eta,
        'unclaimed', GREATEST(i.qty - COALESCE((SELECT SUM(c.qty) FROM supply_claims c
                                                WHERE c.supply_id = i.supply_id), 0), 0)) ORDER BY i.eta)
      FROM incoming_supply i WHERE i.sku = x.sku AND i.qty > 0), '[]')
  ) ORDER BY x.ord), '[]')) AS text)
FROM per_sku x LEFT JOIN skus s ON s.sku = x.sku
"""
_NEAR = (" AND (n.type = ANY(CAST(:national AS varchar[])) OR EXISTS (SELECT 1 FROM service_areas a"
         " WHERE a.node_id = n.node_id AND a.postal_code = :pc))")
_LEVEL = stock_level_sql("x.available", "COALESCE(s.low_stock_threshold, CAST(:low AS integer))")
_ATS = channel_ats_sql(protected=protected_for_others_sql("p.node_id", "p.sku", "CAST(:tier AS varchar)"))
AVAILABILITY = {near: text(_AVAILABILITY_SQL.format(ats=_ATS, level=_LEVEL, area=_NEAR if near else ""))
                for near in (False, True)}
_NATIONAL = sorted(t.value for t in NATIONAL_NODE_TYPES)


@router.get("/availability", summary="Available-to-sell per SKU, per eligible node", response_model=A.AvailabilityView,
            responses=A.errors(403, 422))
async def availability(
    request: Request, who: Principal = Depends(ANY_ROLE),
    skus: str = Query(..., description="comma-separated SKUs"),
    postal_code: Optional[str] = None, channel: Optional[str] = None,
    tier: Optional[str] = Query(None, description="the customer's tier: stock protected for it counts"),
) -> Response:
    wanted = list(dict.fromkeys(s for s in (x.strip() for x in skus.split(",")) if s))
    if not wanted or len(wanted) > 200:
        raise HTTPException(422, "give 1 to 200 skus")
    if who.role == Role.client:
        if channel and channel != who.channel:
            raise HTTPException(403, f"this key sees channel {who.channel} only")
        channel = who.channel  # its own channel's view: the buffers that keep it from overselling apply
    tier = who.buying_tier(tier) if who.role in (Role.client, Role.admin, Role.support) else tier
    state = request.app.state
    index = await index_of(state)
    now = time.time()
    if index is not None:
        fresh = index.freshness()
        async with LazyConnection(state.db.engine) as conn:
            body = await stock_answer(conn, index, wanted, postal_code, channel, tier,
                                      state.settings.low_stock_threshold, memo_seconds(state.settings, index))
    else:
        fresh = DATABASE_READ
        async with state.db.engine.connect() as conn:
            view = await load_channel_view(conn, channel)
            body = (await conn.execute(AVAILABILITY[bool(postal_code)], {
                "skus": wanted, "national": _NATIONAL, "pc": postal_code, "channel": channel, "tier": tier,
                "excluded": sorted(view.exclude_nodes), "types": sorted(view.node_types),
                "low": state.settings.low_stock_threshold, **view.params()})).scalar_one()
    # The object's closing brace gives way to how fresh it is.
    body = body[:body.rindex("}")] + ', "freshness": ' + json.dumps(fresh.answer(now)) + "}"
    return Response(body, media_type="application/json")


@router.get("/inventory/{node_id}/{sku}/ledger", summary="Every change of one position: who, why, which event",
            response_model=A.LedgerView, responses=A.errors(403, 404, 422))
async def ledger(node_id: str, sku: str, request: Request, who: Principal = Depends(ANY_ROLE),
                 limit: int = Query(100, ge=1, le=1000), before_id: Optional[int] = None) -> dict[str, Any]:
    if who.role == Role.partner and who.node_id != node_id:
        raise HTTPException(403, "this key reads its own node only")
    if who.role == Role.client:
        raise HTTPException(403, "clients read availability, not ledgers")
    async with request.app.state.db.engine.connect() as conn:
        pos = (await conn.execute(text(
            f"SELECT on_hand, reserved, safety_stock, {ATS_SQL} AS available FROM inventory_positions"
            " WHERE node_id = :n AND sku = :s"), {"n": node_id, "s": sku})).first()
        if pos is None:
            raise HTTPException(404, f"no position for {sku} at {node_id}")
        rows = (await conn.execute(text(
            "SELECT id, at, on_hand_delta, reserved_delta, disposition, reason, event_id, order_id, actor"
            " FROM inventory_ledger"
            " WHERE node_id = :n AND sku = :s AND (CAST(:b AS bigint) IS NULL OR id < :b)"
            " ORDER BY id DESC LIMIT :l"), {"n": node_id, "s": sku, "b": before_id, "l": limit})).all()
    return {
        "node_id": node_id, "sku": sku,
        "position": {"on_hand": pos.on_hand, "reserved": pos.reserved, "safety_stock": pos.safety_stock,
                     "available": pos.available},
        "entries": [{"id": r.id, "at": r.at.isoformat(), "on_hand_delta": r.on_hand_delta,
                     "reserved_delta": r.reserved_delta, "disposition": r.disposition, "reason": r.reason, "event_id": r.event_id,
                     "order_id": r.order_id, "actor": r.actor} for r in rows],
        "next_before_id": rows[-1].id if len(rows) == limit else None,
    }


@router.put("/channels/{channel}", summary="How a channel sees the common pool: nodes it sells from, buffer it leaves",
            description="With `feed`, the channel's available-to-sell of each SKU is published as availability.changed "
                        "(outbound events) whenever it crosses one of the thresholds or moves by the step; a change of "
                        "the view re-publishes what it changes.",
            response_model=A.ChannelView, responses=A.errors(403, 422))
async def put_channel_view(channel: str, body: ChannelViewIn, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    feed = body.feed.model_dump() if body.feed else None
    async with request.app.state.db.engine.begin() as conn:
        had_feed = (await conn.execute(text("SELECT feed IS NOT NULL FROM channel_views WHERE channel = :c"),
                                       {"c": channel})).scalar()
        await conn.execute(text(
            "INSERT INTO channel_views (channel, node_types, exclude_nodes, buffer_units, buffer_pct, feed, updated_at)"
            " VALUES (:c, CAST(:t AS jsonb), CAST(:x AS jsonb), :u, :p, CAST(:f AS jsonb), now())"
            " ON CONFLICT (channel) DO UPDATE SET"
            " node_types = EXCLUDED.node_types, exclude_nodes = EXCLUDED.exclude_nodes,"
            " buffer_units = EXCLUDED.buffer_units, buffer_pct = EXCLUDED.buffer_pct, feed = EXCLUDED.feed,"
            " updated_at = now()"),
            dict(c=channel, t=json.dumps([t.value for t in body.node_types]), x=json.dumps(body.exclude_nodes),
                 u=body.buffer_units, p=body.buffer_pct, f=json.dumps(feed) if feed else None))
        if feed is not None:
            # The view decides every SKU's figure: all of them are looked at again (a channel's edit is rare).
            await conn.execute(text("INSERT INTO stock_changes (sku) SELECT sku FROM skus"))
            await conn.execute(text("SELECT pg_notify(:c, '')"), {"c": STOCK_CHANNEL})
        if feed is not None and not had_feed:
            try:
                await start_feeds(request.app.state.temporal, request.app.state.settings)
            except (RPCError, RuntimeError) as e:  # the recovery loop starts it within minutes
                get_logger().warning("feeds.start_failed", error=type(e).__name__)
    return {"channel": channel, **body.model_dump(mode="json")}


@router.get("/channels/{channel}", summary="A channel's view of the pool", response_model=A.ChannelView,
            responses=A.errors(403))
async def get_channel_view(channel: str, request: Request, who: Principal = Depends(CHANNEL_READERS)) -> dict:
    if not who.can_see_channel(channel):
        raise HTTPException(403, f"this key sees channel {who.channel} only")
    async with request.app.state.db.engine.connect() as conn:
        view = await load_channel_view(conn, channel)
        feed = (await conn.execute(text("SELECT feed FROM channel_views WHERE channel = :c"), {"c": channel})).scalar()
    return {"channel": channel, "node_types": sorted(view.node_types), "exclude_nodes": sorted(view.exclude_nodes),
            "buffer_units": view.buffer_units, "buffer_pct": view.buffer_pct, "feed": feed}


@router.get("/channels/{channel}/feed", summary="A channel's stock feed: a snapshot by pages, or the changes since",
            description="Without `since`: every SKU's available-to-sell on this channel now (its view and buffers "
                        "applied), `limit` per page, `cursor` for the next; keep the answer's `since`. With `since`: "
                        "what the feed published after it (as availability.changed), oldest first; pass the last "
                        "`seq` (or the answer's `since`) to go on.",
            response_model=A.FeedPage, responses=A.errors(403, 422))
async def channel_feed(channel: str, request: Request, who: Principal = Depends(CHANNEL_READERS),
                       cursor: Optional[str] = Query(None, max_length=64), since: Optional[int] = Query(None, ge=0),
                       limit: int = Query(500, ge=1, le=5000)) -> dict:
    if not who.can_see_channel(channel):
        raise HTTPException(403, f"this key sees channel {who.channel} only")
    if cursor is not None and since is not None:
        raise HTTPException(422, "a snapshot page (cursor) or the changes since, not both")
    async with request.app.state.db.engine.connect() as conn:
        high = (await conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM channel_availability WHERE channel = :c"),
                                   {"c": channel})).scalar_one()
        if since is not None:
            rows = (await conn.execute(text(
                "SELECT sku, available, seq, updated_at FROM channel_availability WHERE channel = :c AND seq > :s"
                " ORDER BY seq LIMIT :l"), {"c": channel, "s": since, "l": limit})).all()
            return {"channel": channel, "next_cursor": None, "since": rows[-1].seq if rows else max(since, 0),
                    "items": [{"sku": r.sku, "available": r.available, "seq": r.seq,
                               "updated_at": r.updated_at.isoformat()} for r in rows]}
        skus = list((await conn.execute(text(
            "SELECT sku FROM skus WHERE (CAST(:a AS varchar) IS NULL OR sku > :a) AND NOT digital ORDER BY sku"
            " LIMIT :l"), {"a": cursor, "l": limit})).scalars())
        view = await load_channel_view(conn, channel)
        pool = Feed(channel=channel, node_types=sorted(view.node_types), exclude_nodes=sorted(view.exclude_nodes),
                    buffer_units=view.buffer_units, buffer_pct=view.buffer_pct)
        available = await channel_available(conn, pool, skus) if skus else {}
    return {"channel": channel, "since": high, "next_cursor": skus[-1] if len(skus) == limit else None,
            "items": [{"sku": k, "available": available.get(k, 0)} for k in skus]}


@router.put("/safety-stock-defaults", summary="Safety stock per node type and SKU category (positions without their own)",
            response_model=A.SafetyStockDefaultsSet, responses=A.errors(403, 422))
async def put_safety_defaults(body: SafetyStockDefaultsIn, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    rows = [{"scope": "node_type", "key": k.value, "qty": q} for k, q in body.node_types.items()]
    rows += [{"scope": "category", "key": k, "qty": q} for k, q in body.categories.items()]
    async with request.app.state.db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM safety_stock_defaults"))
        if rows:
            await conn.execute(text("INSERT INTO safety_stock_defaults (scope, key, qty) VALUES (:scope, :key, :qty)"),
                               rows)
        updated = await service.apply_safety_defaults(conn)
    return {**body.model_dump(mode="json"), "positions_updated": updated}


@router.get("/safety-stock-defaults", summary="Safety stock defaults", response_model=A.SafetyStockDefaults,
            responses=A.errors(403))
async def get_safety_defaults(request: Request, _: Principal = Depends(ANY_ROLE)) -> dict:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT scope, key, qty FROM safety_stock_defaults ORDER BY scope, key"))).all()
    return {"node_types": {r.key: r.qty for r in rows if r.scope == "node_type"},
            "categories": {r.key: r.qty for r in rows if r.scope == "category"}}


@router.put("/protected-stock", summary="Stock only one customer tier may buy, per node and SKU (0 removes)",
            response_model=A.Updated, responses=A.errors(403, 422))
async def put_protected(body: list[ProtectedIn], request: Request, _: Principal = Depends(ADMIN)) -> dict:
    async with request.app.state.db.engine.begin() as conn:
        for p in body:
            if p.qty == 0:
                await conn.execute(text("DELETE FROM protected_stock WHERE node_id = :n AND sku = :s AND tier = :t"),
                                   dict(n=p.node_id, s=p.sku, t=p.tier))
            else:
                await conn.execute(text(
                    "INSERT INTO protected_stock (node_id, sku, tier, qty) VALUES (:n, :s, :t, :q)"
                    " ON CONFLICT (node_id, sku, tier) DO UPDATE SET qty = EXCLUDED.qty"),
                    dict(n=p.node_id, s=p.sku, t=p.tier, q=p.qty))
    return {"updated": len(body)}


@router.get("/protected-stock", summary="Stock protected for customer tiers", response_model=A.ProtectedList,
            responses=A.errors(403))
async def get_protected(request: Request, node_id: Optional[str] = None, sku: Optional[str] = None,
                        _: Principal = Depends(STAFF)) -> dict:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT node_id, sku, tier, qty FROM protected_stock WHERE (CAST(:n AS varchar) IS NULL OR node_id = :n)"
            " AND (CAST(:s AS varchar) IS NULL OR sku = :s) ORDER BY node_id, sku, tier"),
            {"n": node_id, "s": sku})).all()
    return {"protected": [dict(r._mapping) for r in rows]}


WAKE_SETTLE = timedelta(seconds=2)


async def wake_backorders(request: Request, skus: set[str]) -> int:
    """Tell backordered orders of these SKUs to try again now (stock or supply changed)."""
    if not skus:
        return 0
    # A burst of changes wakes each order once: one woken in the last WAKE_SETTLE is skipped, and the order
    # itself waits as long before it looks (workflows/order/workflow.py SETTLE), so it sees all of the burst.
    async with request.app.state.db.engine.begin() as conn:
        ids = [r.order_id for r in (await conn.execute(text(
            "UPDATE orders SET woken_at = now() WHERE order_id IN (SELECT DISTINCT l.order_id FROM order_lines l"
            "  WHERE l.sku = ANY(:s) AND l.status = 'backordered' LIMIT 1000)"
            " AND (woken_at IS NULL OR woken_at < now() - CAST(:settle AS interval)) RETURNING order_id"),
            {"s": sorted(skus), "settle": f"{WAKE_SETTLE.total_seconds()} seconds"})).all()]
    woken = 0
    for oid in ids:
        try:
            await request.app.state.temporal.get_workflow_handle(oid).signal("supply_changed")
            woken += 1
        except Exception:  # closed, or Temporal away: the hourly backorder retry still runs
            pass
    return woken


@router.post("/inventory/supply", summary="Incoming supply (purchase orders) with ETA; qty 0 cancels",
             response_model=A.SupplyAnswer, responses=A.errors(403, 422))
async def post_supply(body: list[SupplyIn], request: Request, who: Principal = Depends(FEEDERS)) -> dict:
    async with request.app.state.db.engine.begin() as conn:
        await _check_feed(conn, who, body, "announce supply for")
        # A purchase order already known belongs to its node: only that node's partner (or staff) may change
        # or cancel it. Locked until commit, so the check holds for the statements below.
        owners = {r.supply_id: r.node_id for r in (await conn.execute(text(
            "SELECT supply_id, node_id FROM incoming_supply WHERE supply_id = ANY(:i) ORDER BY supply_id FOR UPDATE"),
            {"i": sorted({s.supply_id for s in body})})).all()}
        for supply_id, node_id in sorted(owners.items()):
            if not who.can_touch_node(node_id):
                raise HTTPException(403, f"supply {supply_id} belongs to node {node_id}: this key may not change it")
        staff = who.role in (Role.admin, Role.support)
        changed: set[str] = set()
        for s in body:
            # Every statement is scoped to the node it names as well (staff may move a purchase order).
            if s.qty == 0:
                res = await conn.execute(text(
                    "DELETE FROM incoming_supply WHERE supply_id = :i AND (node_id = :n OR :staff) RETURNING sku"),
                    {"i": s.supply_id, "n": s.node_id, "staff": staff})
            else:
                res = await conn.execute(text(
                    "INSERT INTO incoming_supply (supply_id, node_id, sku, qty, eta, updated_at)"
                    " VALUES (:i, :n, :s, :q, :e, now()) ON CONFLICT (supply_id) DO UPDATE SET node_id = :n,"
                    " sku = :s, qty = :q, eta = :e, updated_at = now()"
                    " WHERE (incoming_supply.node_id = :n OR :staff) AND"
                    " (incoming_supply.node_id, incoming_supply.sku, incoming_supply.qty, incoming_supply.eta)"
                    " IS DISTINCT FROM (:n, :s, :q, CAST(:e AS timestamptz)) RETURNING sku"),
                    dict(i=s.supply_id, n=s.node_id, s=s.sku, q=s.qty, e=s.eta, staff=staff))
            changed.update(r.sku for r in res.all())
    # Idempotent by supply_id (a repeat changes nothing), so the guard keeps this answer once it is sent.
    woken = await wake_backorders(request, changed)
    return {"applied": len(body), "changed_skus": sorted(changed), "orders_repromised": woken}
