"""Read the network into the routing engine's plain data (one query per table, for one request)."""

from __future__ import annotations

import re
import time
from typing import Any, Awaitable, Callable, Hashable, Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory.arithmetic import channel_ats_sql, protected_for_others_by_position_sql
from inventory.channels import load_channel_view
from routing.fast import DenseStock
from routing.model import NetworkView, NodeInfo, SkuRules
from routing.scorecard import Scorecard


def node_info(row, used_today: int = 0, orders_today: int = 0, used_hour: int = 0) -> NodeInfo:
    cal = row.calendar or {}
    remaining = None if row.units_per_day is None else max(row.units_per_day - used_today, 0)
    if getattr(row, "units_per_hour", None) is not None:  # the tighter of today's and this hour's room
        hour_left = max(row.units_per_hour - used_hour, 0)
        remaining = hour_left if remaining is None else min(remaining, hour_left)
    orders_left = None if getattr(row, "orders_per_day", None) is None else max(row.orders_per_day - orders_today, 0)
    return NodeInfo(
        node_id=row.node_id, type=row.type, lat=row.lat, lon=row.lon,
        capabilities=frozenset(row.capabilities or []), enabled=row.enabled,
        handling_cost=float(row.handling_cost), remaining_units=remaining, remaining_orders=orders_left,
        processing_minutes=row.processing_time_minutes, cutoff_time=row.cutoff_time,
        timezone=row.timezone, closed_weekdays=frozenset(cal.get("closed_weekdays", [])),
        holidays=frozenset(str(h) for h in cal.get("holidays", [])),
        hours=(cal["hours"]["open"], cal["hours"]["close"]) if cal.get("hours") else None,
        same_day_cutoff=cal.get("same_day_cutoff") or "14:00", waves=tuple(cal.get("waves") or ()), ships_whole=getattr(row, "ships_whole", None),
    )


async def used_this_hour(conn: AsyncConnection, node_ids: list[str]) -> dict[str, int]:
    """The units each node took on in the last hour (held, committed or already picked): its hourly pick load."""
    return {r.node_id: int(r.units) for r in (await conn.execute(text(
        "SELECT node_id, SUM(qty) AS units FROM reservations WHERE node_id = ANY(:n)"
        " AND created_at > now() - interval '1 hour' AND status IN ('held', 'committed', 'consumed')"
        " GROUP BY node_id"), {"n": node_ids})).all()}


def local_day(tz: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


# What quotes (POST /promise) read of the slow-changing network — nodes, service areas, postal codes, SKU
# rules, channel views, bid prices, routing rules, carrier closures — kept per process and database for a few
# seconds: (database, kind, key) → (expires, value). Stock and today's capacity are always read live. Orders
# never use it; this process's committed network writes clear it (below), other processes' apply within the TTL.
_MEMO: dict[tuple, tuple[float, Any]] = {}
_MEMO_LIMIT = 200_000  # entries; past it the memo starts over rather than grow without bound


def forget_network() -> None:
    _MEMO.clear()


# The tables the memo keeps rows of. A committed write to any of them, by any code in this process, clears
# it, so a new write route cannot forget to (scorecards, derived from fulfillments, follow the TTL alone).
NETWORK_TABLES = ("nodes", "service_areas", "postal_codes", "skus", "channel_views", "routing_rules",
                  "carrier_closures", "bid_prices")
_NETWORK_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:%s)\b" % "|".join(NETWORK_TABLES),
                            re.IGNORECASE)


@event.listens_for(Engine, "after_cursor_execute")
def _note_network_write(conn, cursor, statement, parameters, context, executemany) -> None:
    # Reads, most statements, skip the scan: 0.2 µs each; a write is scanned in about 4 µs (its head only: a
    # statement names the table it writes first, and a 20,000-row insert is megabytes of text).
    head = statement[:512]
    if head.lstrip()[:6].upper() != "SELECT" and _NETWORK_WRITE.search(head):
        conn.info["network_written"] = True


@event.listens_for(Engine, "commit")
def _forget_on_commit(conn) -> None:
    if conn.info.pop("network_written", False):
        forget_network()


@event.listens_for(Engine, "rollback")
def _nothing_written(conn) -> None:
    conn.info.pop("network_written", None)


_DB_KEYS: dict[int, tuple[Any, str]] = {}


def _db_key(engine) -> str:
    """The memo's name for a database: its URL, rendered once per engine (rendering is microseconds, per lookup)."""
    hit = _DB_KEYS.get(id(engine))
    if hit is None or hit[0] is not engine:
        hit = _DB_KEYS[id(engine)] = (engine, str(engine.url))
    return hit[1]


async def memo_many(conn: AsyncConnection, kind: str, keys: Iterable[Hashable], seconds: float,
                    load: Callable[[list], Awaitable[dict]], absent: bool = True) -> dict:
    """Values for ``keys`` (None for an absent one), the missing or expired ones loaded in one call of
    ``load`` (a dict of those it found); ``seconds`` 0 loads them all. ``absent`` False: a key not found is
    asked again next time (an unknown SKU may be created in a moment; an error need not be fast)."""
    keys = list(keys)
    if seconds <= 0:
        found = await load(keys)
        return {k: found.get(k) for k in keys}
    db, now = _db_key(conn.engine), time.monotonic()
    out, missing = {}, []
    for k in keys:
        hit = _MEMO.get((db, kind, k))
        if hit is not None and hit[0] > now:
            out[k] = hit[1]
        else:
            missing.append(k)
    if missing:
        found = await load(missing)
        if len(_MEMO) + len(missing) > _MEMO_LIMIT:
            _MEMO.clear()
        for k in missing:
            out[k] = found.get(k)
            if absent or out[k] is not None:
                _MEMO[(db, kind, k)] = (now + seconds, out[k])
    return out


async def memo(conn: AsyncConnection, kind: str, seconds: float, load: Callable[[], Awaitable[Any]]) -> Any:
    """One memoised value (see memo_many)."""
    async def one(_: list) -> dict:
        return {None: await load()}
    return (await memo_many(conn, kind, [None], seconds, one))[None]


async def _nodes(conn: AsyncConnection, cache_seconds: float) -> tuple[list, dict[str, NodeInfo], list]:
    """Every node's row, its NodeInfo, and the rows of nodes with a daily or hourly limit."""
    async def load():
        rows = (await conn.execute(text("SELECT * FROM nodes"))).all()
        limited = [r for r in rows if r.units_per_day is not None or getattr(r, "orders_per_day", None) is not None
                   or getattr(r, "units_per_hour", None) is not None]
        return rows, {r.node_id: node_info(r) for r in rows}, limited
    return await memo(conn, "nodes", cache_seconds, load)


async def service_areas(conn: AsyncConnection, postal_codes: list[str]) -> dict[str, dict[str, int]]:
    """The store mapping of these postal codes: postal code → {node_id: priority}."""
    found: dict[str, dict[str, int]] = {}
    for r in (await conn.execute(text(
            "SELECT postal_code, node_id, priority FROM service_areas WHERE postal_code = ANY(:p)"),
            {"p": postal_codes})).all():
        found.setdefault(r.postal_code, {})[r.node_id] = r.priority
    return found


async def node_rows(conn: AsyncConnection, cache_seconds: float) -> list:
    """Every node's row, from the memo."""
    return (await _nodes(conn, cache_seconds))[0]


async def load_network(conn: AsyncConnection, skus: list[str], postal_codes: list[str], at: datetime,
                       channel: str | None = None, hold_id: str | None = None, tier: str | None = None,
                       cache_seconds: float = 0.0, index: Any = None) -> NetworkView:
    """The nodes, service areas and stock a request can use, as the order's channel sees them; with
    ``cache_seconds`` (quotes) the slow-changing parts come from the memo and only stock and capacity are read;
    with an ``index`` (inventory.index.AvailabilityIndex: quotes, availability, holds) stock comes from memory and
    today's capacity from a memo of a second, so nothing is read per request."""
    channel_view = await memo(conn, f"channel:{channel}", cache_seconds, lambda: load_channel_view(conn, channel))
    nodes, infos, limited = await _nodes(conn, cache_seconds)
    used, hourly = {}, {}
    if limited:
        utc_day = at.date()

        async def capacity_used() -> tuple[dict, dict]:
            used = {(r.node_id, r.capacity_day): (int(r.units), int(r.orders)) for r in (await conn.execute(text(
                "SELECT node_id, capacity_day, SUM(qty) AS units, COUNT(DISTINCT fulfillment_id) AS orders"
                " FROM reservations WHERE capacity_day BETWEEN :a AND :b AND status IN ('held', 'committed')"
                " GROUP BY node_id, capacity_day"),
                dict(a=utc_day - timedelta(days=1), b=utc_day + timedelta(days=1)))).all()}
            per_hour = [r.node_id for r in limited if getattr(r, "units_per_hour", None) is not None]
            return used, (await used_this_hour(conn, per_hour) if per_hour else {})
        used, hourly = await memo(conn, f"capacity:{utc_day}", 1.0 if index is not None else 0.0, capacity_used)
    # Only nodes with a daily or hourly limit depend on what today and this hour have used.
    # The network memo's read stands for the network's version: the quote engine keeps per-destination tables by it.
    view = NetworkView(nodes=dict(infos), epoch=infos, channel=channel)
    for r in limited:
        view.nodes[r.node_id] = node_info(r, *used.get((r.node_id, local_day(r.timezone, at)), (0, 0)),
                                          used_hour=hourly.get(r.node_id, 0))

    view.service_areas = {k: v for k, v in (await memo_many(
        conn, "areas", postal_codes, cache_seconds, lambda codes: service_areas(conn, codes))).items() if v}
    # One row per SKU (positions as arrays: a thousand rows cost more to ship than to compute), and whether
    # supply is on the way, so a plan that can't fill from stock asks for supply only when there is some.
    if index is not None:
        view.available = DenseStock(*index.dense(skus, channel_view, tier))
        view.incoming = {s for s in skus if s in index.incoming}
    else:
        ats = channel_ats_sql(protected="COALESCE(ps.qty, 0)")
        for r in (await conn.execute(text(
            "SELECT k.sku, a.nodes, a.ats,"
            " EXISTS (SELECT 1 FROM incoming_supply s WHERE s.sku = k.sku AND s.qty > 0) AS incoming"
            " FROM unnest(CAST(:s AS varchar[])) AS k(sku) LEFT JOIN ("
            f"  SELECT p.sku, array_agg(p.node_id) AS nodes, array_agg({ats}) AS ats FROM inventory_positions p"
            f"  LEFT JOIN ({protected_for_others_by_position_sql(':s', 'CAST(:tier AS varchar)')}) ps"
            "   ON ps.node_id = p.node_id AND ps.sku = p.sku WHERE p.sku = ANY(:s) GROUP BY p.sku) a ON a.sku = k.sku"),
            {"s": skus, "tier": tier, **channel_view.params()},
        )).all():
            for node_id, units in zip(r.nodes or (), r.ats or ()):
                view.available[(node_id, r.sku)] = int(units)
            if r.incoming:
                view.incoming.add(r.sku)
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
    async def prices(keys: list) -> dict:
        found: dict[str, dict[str, float]] = {}
        for r in (await conn.execute(
                text("SELECT node_id, sku, price FROM bid_prices WHERE sku = ANY(:s)"), {"s": keys})).all():
            found.setdefault(r.sku, {})[r.node_id] = float(r.price)
        return found

    for sku, by_node in (await memo_many(conn, "bid_prices", skus, cache_seconds, prices)).items():
        for node_id, price in (by_node or {}).items():
            view.opportunity[(node_id, sku)] = price
    view.skus = {k: v for k, v in (await memo_many(conn, "skus", skus, cache_seconds,
                                                   lambda keys: sku_rules(conn, keys), absent=False)).items() if v}
    return view


async def sku_rules(conn: AsyncConnection, skus: list[str]) -> dict[str, SkuRules]:
    """What routing must respect of these SKUs (an unknown SKU is absent)."""
    out = {}
    for r in (await conn.execute(
        text("SELECT sku, allowed_node_types, preorder_release_date, oversized, hazmat, ship_alone, digital,"
             " pack_sizes FROM skus WHERE sku = ANY(:s)"), {"s": skus}
    )).all():
        handling = frozenset(c for c in ("oversized", "hazmat", "ship_alone") if getattr(r, c))
        out[r.sku] = SkuRules(frozenset(r.allowed_node_types or []), r.preorder_release_date, handling, r.digital,
                              tuple(sorted((r.pack_sizes or {}).items())))
    return out


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


# A pickup made ready, collected or left uncollected, and a transfer on its way or received, were accepted and
# picked like a parcel: the store's scorecard counts them. So does a parcel a carrier lost (exception): the node
# did its part.
_PICKED = ("picked", "packed", "shipped", "delivered", "ready_for_pickup", "collected", "expired", "in_transit",
           "received_at_store", "exception")
_ACCEPTED = ("accepted",) + _PICKED


async def load_scorecards(conn: AsyncConnection, node_ids: list[str] | None = None,
                          channel: str | None = None, since: datetime | None = None,
                          until: datetime | None = None) -> dict[str, Scorecard]:
    """Each node's partner scorecard from its fulfillments (all nodes or these; all orders or one channel's; of
    orders placed from ``since`` until before ``until``, or all time)."""
    scope = ("SELECT f.* FROM fulfillments f JOIN orders o USING (order_id)"
             " WHERE (CAST(:n AS varchar[]) IS NULL OR f.node_id = ANY(CAST(:n AS varchar[])))"
             " AND (CAST(:c AS varchar) IS NULL OR o.channel = CAST(:c AS varchar))"
             " AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f)"
             " AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)")
    params = {"n": node_ids, "c": channel, "f": since, "t": until}
    rows = (await conn.execute(text(
        f"WITH f AS ({scope}) SELECT node_id, count(*) AS n,"
        f" count(*) FILTER (WHERE status IN {_ACCEPTED} OR status IN ('rejected', 'timed_out')) AS decided,"
        f" count(*) FILTER (WHERE status IN {_ACCEPTED}) AS accepted,"
        f" sum(requested_units) FILTER (WHERE status IN {_PICKED} OR short_units > 0) AS asked,"
        f" sum(short_units) FILTER (WHERE status IN {_PICKED} OR short_units > 0) AS short,"
        " count(*) FILTER (WHERE shipped_at IS NOT NULL AND ship_by IS NOT NULL) AS shipped,"
        " count(*) FILTER (WHERE shipped_at <= ship_by) AS on_time,"
        " count(*) FILTER (WHERE status IN ('delivered', 'collected')) AS delivered,"
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
        " AND (CAST(:c AS varchar) IS NULL OR o.channel = CAST(:c AS varchar))"
        " AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f)"
        " AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t) GROUP BY r.node_id"), params)).all()}

    def ratio(a, b):
        return round(a / b, 4) if b else None

    return {r.node_id: Scorecard(
        fulfillments=r.n, acceptance_rate=ratio(r.accepted, r.decided),
        fill_rate=ratio((r.asked or 0) - (r.short or 0), r.asked or 0),
        on_time_ship_rate=ratio(r.on_time, r.shipped), return_rate=ratio(returns.get(r.node_id, 0), r.delivered),
        avg_minutes_to_accept=None if r.to_accept is None else round(float(r.to_accept), 1),
        rejection_reasons=reasons.get(r.node_id, {})) for r in rows}
