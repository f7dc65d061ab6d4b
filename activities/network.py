"""Read the network into the routing engine's plain data (one query per table, for one request)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory.arithmetic import channel_ats_sql, protected_for_others_sql
from inventory.channels import load_channel_view
from routing.model import NetworkView, NodeInfo, SkuRules
from routing.scorecard import Scorecard


def node_info(row, used_today: int = 0, orders_today: int = 0) -> NodeInfo:
    cal = row.calendar or {}
    remaining = None if row.units_per_day is None else max(row.units_per_day - used_today, 0)
    orders_left = None if getattr(row, "orders_per_day", None) is None else max(row.orders_per_day - orders_today, 0)
    return NodeInfo(
        node_id=row.node_id, type=row.type, lat=row.lat, lon=row.lon,
        capabilities=frozenset(row.capabilities or []), enabled=row.enabled,
        handling_cost=float(row.handling_cost), remaining_units=remaining, remaining_orders=orders_left,
        processing_minutes=row.processing_time_minutes, cutoff_time=row.cutoff_time,
        timezone=row.timezone, closed_weekdays=frozenset(cal.get("closed_weekdays", [])),
        holidays=frozenset(str(h) for h in cal.get("holidays", [])),
        hours=(cal["hours"]["open"], cal["hours"]["close"]) if cal.get("hours") else None,
        same_day_cutoff=cal.get("same_day_cutoff") or "14:00",
    )


def local_day(tz: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


# Node rows read by quotes (POST /promise), per database, for a few seconds: (expires, rows, infos without
# capacity used). Orders always read the table; this process's node writes clear it (forget_nodes).
_NODE_CACHE: dict[str, tuple[float, list, dict[str, NodeInfo]]] = {}


def forget_nodes() -> None:
    _NODE_CACHE.clear()


async def _nodes(conn: AsyncConnection, cache_seconds: float) -> tuple[list, dict[str, NodeInfo]]:
    key = str(conn.engine.url)
    hit = _NODE_CACHE.get(key)
    if cache_seconds > 0 and hit is not None and hit[0] > time.monotonic():
        return hit[1], hit[2]
    rows = (await conn.execute(text("SELECT * FROM nodes"))).all()
    infos = {r.node_id: node_info(r) for r in rows}
    if cache_seconds > 0:
        _NODE_CACHE[key] = (time.monotonic() + cache_seconds, rows, infos)
    return rows, infos


async def load_network(conn: AsyncConnection, skus: list[str], postal_codes: list[str], at: datetime,
                       channel: str | None = None, hold_id: str | None = None, tier: str | None = None,
                       node_cache_seconds: float = 0.0) -> NetworkView:
    """The nodes, service areas and stock a request can use, as the order's channel sees them."""
    channel_view = await load_channel_view(conn, channel)
    nodes, infos = await _nodes(conn, node_cache_seconds)
    utc_day = at.date()
    used_rows = (await conn.execute(
        text(
            "SELECT node_id, capacity_day, SUM(qty) AS units, COUNT(DISTINCT fulfillment_id) AS orders"
            " FROM reservations"
            " WHERE capacity_day BETWEEN :a AND :b AND status IN ('held', 'committed') GROUP BY node_id, capacity_day"
        ),
        dict(a=utc_day - timedelta(days=1), b=utc_day + timedelta(days=1)),
    )).all()
    used = {(r.node_id, r.capacity_day): (int(r.units), int(r.orders)) for r in used_rows}
    # Only nodes with a daily limit depend on what today has used.
    view = NetworkView(nodes={
        r.node_id: node_info(r, *used.get((r.node_id, local_day(r.timezone, at)), (0, 0)))
        if r.units_per_day is not None or getattr(r, "orders_per_day", None) is not None else infos[r.node_id]
        for r in nodes
    })
    for r in (await conn.execute(
        text("SELECT postal_code, node_id, priority FROM service_areas WHERE postal_code = ANY(:p)"),
        {"p": postal_codes},
    )).all():
        view.service_areas.setdefault(r.postal_code, {})[r.node_id] = r.priority
    ats = channel_ats_sql(protected=protected_for_others_sql("p.node_id", "p.sku", "CAST(:tier AS varchar)"))
    for r in (await conn.execute(
        text(f"SELECT node_id, sku, {ats} AS ats FROM inventory_positions p WHERE sku = ANY(:s)"),
        {"s": skus, "tier": tier, **channel_view.params()},
    )).all():
        view.available[(r.node_id, r.sku)] = int(r.ats)
    if hold_id:
        for r in (await conn.execute(
            text("SELECT node_id, sku, SUM(qty) AS qty FROM reservations WHERE fulfillment_id = :h"
                 " AND status = 'held' GROUP BY node_id, sku"), {"h": hold_id},
        )).all():
            view.available[(r.node_id, r.sku)] = view.available.get((r.node_id, r.sku), 0) + int(r.qty)
    for node in view.nodes.values():
        why = channel_view.excludes(node.node_id, node.type)
        if why:
            view.channel_excluded[node.node_id] = why
    # What the demand forecast says taking a unit now costs later orders (refreshed by a schedule).
    for r in (await conn.execute(
        text("SELECT node_id, sku, price FROM bid_prices WHERE sku = ANY(:s)"), {"s": skus})).all():
        view.opportunity[(r.node_id, r.sku)] = float(r.price)
    for r in (await conn.execute(
        text("SELECT sku, allowed_node_types, preorder_release_date, oversized, hazmat, ship_alone, digital"
             " FROM skus WHERE sku = ANY(:s)"), {"s": skus}
    )).all():
        handling = frozenset(c for c in ("oversized", "hazmat", "ship_alone") if getattr(r, c))
        view.skus[r.sku] = SkuRules(frozenset(r.allowed_node_types or []), r.preorder_release_date, handling,
                                    r.digital)
    return view


async def load_carrier_closures(conn: AsyncConnection) -> dict[str, frozenset[str]]:
    """Each carrier's own closures (storms, embargoes) from today on, beside its national holidays."""
    closures: dict[str, set[str]] = {}
    for r in (await conn.execute(text(
            "SELECT carrier, day FROM carrier_closures WHERE day >= CURRENT_DATE - 1"))).all():
        closures.setdefault(r.carrier, set()).add(r.day.isoformat())
    return {c: frozenset(days) for c, days in closures.items()}


async def postal_coordinates(conn: AsyncConnection, postal_codes: list[str]) -> dict[str, tuple[float, float]]:
    rows = (await conn.execute(
        text("SELECT postal_code, lat, lon FROM postal_codes WHERE postal_code = ANY(:p)"), {"p": postal_codes}
    )).all()
    return {r.postal_code: (r.lat, r.lon) for r in rows}


_ACCEPTED = ("accepted", "picked", "packed", "shipped", "delivered")
_PICKED = ("picked", "packed", "shipped", "delivered")


async def load_scorecards(conn: AsyncConnection, node_ids: list[str] | None = None,
                          channel: str | None = None) -> dict[str, Scorecard]:
    """Each node's partner scorecard from its fulfillments (all nodes or these; all orders or one channel's)."""
    scope = ("SELECT f.* FROM fulfillments f JOIN orders o USING (order_id)"
             " WHERE (CAST(:n AS varchar[]) IS NULL OR f.node_id = ANY(CAST(:n AS varchar[])))"
             " AND (CAST(:c AS varchar) IS NULL OR o.channel = CAST(:c AS varchar))")
    params = {"n": node_ids, "c": channel}
    rows = (await conn.execute(text(
        f"WITH f AS ({scope}) SELECT node_id, count(*) AS n,"
        f" count(*) FILTER (WHERE status IN {_ACCEPTED} OR status IN ('rejected', 'timed_out')) AS decided,"
        f" count(*) FILTER (WHERE status IN {_ACCEPTED}) AS accepted,"
        f" sum(requested_units) FILTER (WHERE status IN {_PICKED} OR short_units > 0) AS asked,"
        f" sum(short_units) FILTER (WHERE status IN {_PICKED} OR short_units > 0) AS short,"
        " count(*) FILTER (WHERE shipped_at IS NOT NULL AND ship_by IS NOT NULL) AS shipped,"
        " count(*) FILTER (WHERE shipped_at <= ship_by) AS on_time,"
        " count(*) FILTER (WHERE status = 'delivered') AS delivered,"
        " avg(extract(epoch FROM accepted_at - released_at)) / 60 AS to_accept"
        " FROM f GROUP BY node_id ORDER BY node_id"), params)).all()
    reasons: dict[str, dict[str, int]] = {}
    for r in (await conn.execute(text(
            f"WITH f AS ({scope}) SELECT node_id, COALESCE(reason, 'none given') AS reason, count(*) AS n FROM f"
            " WHERE status = 'rejected' GROUP BY node_id, reason"), params)).all():
        reasons.setdefault(r.node_id, {})[r.reason] = r.n
    returns = {r.node_id: r.n for r in (await conn.execute(text(
        "SELECT r.node_id, count(*) AS n FROM returns r JOIN orders o USING (order_id)"
        " WHERE r.node_id IS NOT NULL AND (CAST(:n AS varchar[]) IS NULL OR r.node_id = ANY(CAST(:n AS varchar[])))"
        " AND (CAST(:c AS varchar) IS NULL OR o.channel = CAST(:c AS varchar)) GROUP BY r.node_id"), params)).all()}

    def ratio(a, b):
        return round(a / b, 4) if b else None

    return {r.node_id: Scorecard(
        fulfillments=r.n, acceptance_rate=ratio(r.accepted, r.decided),
        fill_rate=ratio((r.asked or 0) - (r.short or 0), r.asked or 0),
        on_time_ship_rate=ratio(r.on_time, r.shipped), return_rate=ratio(returns.get(r.node_id, 0), r.delivered),
        avg_minutes_to_accept=None if r.to_accept is None else round(float(r.to_accept), 1),
        rejection_reasons=reasons.get(r.node_id, {})) for r in rows}
