"""Stock in Postgres: reservations as rows, positions changed only by conditional updates.

A reservation moves held → committed (released to its node) → consumed (shipped), or to released.
Oversell is impossible because a reservation only lands through
``UPDATE ... SET reserved = reserved + q WHERE on_hand - reserved - safety_stock >= q``;
positions are always touched in (node_id, sku) order so concurrent orders cannot deadlock.
Every operation is idempotent: reservations are keyed by fulfillment and line, and every other
change carries a ledger event id that is unique.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory.arithmetic import channel_ats_sql, protected_for_others_sql
from inventory.index import note_written


# Reservations that hold stock; consumed and released ones no longer do.
ACTIVE = ("held", "committed")


def reservation_id(fulfillment_id: str, line_id: str) -> str:
    return f"{fulfillment_id}:{line_id}"


@dataclass(frozen=True)
class Hold:
    fulfillment_id: str
    line_id: str
    node_id: str
    sku: str
    qty: int


# Effective safety stock of positions without their own: the larger of the node-type and category defaults.
DEFAULT_SAFETY_SQL = """
    UPDATE inventory_positions p SET safety_stock = GREATEST(
      COALESCE((SELECT d.qty FROM safety_stock_defaults d JOIN skus s ON d.scope = 'category' AND d.key = s.category
                WHERE s.sku = p.sku), 0),
      COALESCE((SELECT d.qty FROM safety_stock_defaults d JOIN nodes n ON d.scope = 'node_type' AND d.key = n.type
                WHERE n.node_id = p.node_id), 0))
    WHERE p.safety_stock_override IS NULL"""


async def apply_safety_defaults(conn: AsyncConnection, node_id: Optional[str] = None, sku: Optional[str] = None) -> int:
    """Recompute default safety stock of positions without an override (of a node, a SKU, or both)."""
    where = (" AND p.node_id = :n" if node_id is not None else "") + (" AND p.sku = :s" if sku is not None else "")
    res = await conn.execute(text(DEFAULT_SAFETY_SQL + where), dict(n=node_id, s=sku))
    return res.rowcount


def feed_event_id(node_id: str, event_id: str) -> str:
    """The ledger's name for an event a feed sends: its node's own namespace, apart from the system's ids
    (reserve:, commit:, consume:, restock:, snapshot: …), so a feed can neither pre-empt one nor collide with
    another node's."""
    return f"feed:{node_id}:{event_id}"


async def _ledger(
    conn: AsyncConnection, node_id: str, sku: str, on_hand_delta: int, reserved_delta: int,
    reason: str, event_id: Optional[str], order_id: Optional[str] = None, actor: str = "system",
    disposition: str = "sellable",
) -> bool:
    """Append to the ledger; False when the event was already applied."""
    row = await conn.execute(
        text(
            "INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, disposition, reason, event_id,"
            " order_id, actor, at) VALUES (:n, :s, :oh, :rd, :d, :r, :e, :o, :a, now())"
            " ON CONFLICT (event_id) DO NOTHING RETURNING id"
        ),
        dict(n=node_id, s=sku, oh=on_hand_delta, rd=reserved_delta, d=disposition, r=reason, e=event_id,
             o=order_id, a=actor),
    )
    return row.first() is not None


async def _ensure_position(conn: AsyncConnection, node_id: str, sku: str) -> bool:
    """An empty position for units to land in; True if it did not exist."""
    return (await conn.execute(
        text("INSERT INTO inventory_positions (node_id, sku, on_hand, reserved, safety_stock, updated_at)"
             " VALUES (:n, :s, 0, 0, 0, now()) ON CONFLICT (node_id, sku) DO NOTHING RETURNING 1"),
        dict(n=node_id, s=sku),
    )).first() is not None


# Units that are not sellable live in their own buckets; only on hand (sellable) can be sold.
UNSELLABLE = ("damaged", "pending_inspection")


async def receive_units(
    conn: AsyncConnection, node_id: str, sku: str, qty: int, disposition: str, reason: str, event_id: str,
    order_id: Optional[str] = None, actor: str = "system",
) -> bool:
    """Units arrive at a node (a return, a transfer) in a disposition. False if already applied."""
    if disposition == "sellable":
        return await adjust(conn, node_id, sku, qty, reason, event_id, order_id, actor)
    if disposition not in UNSELLABLE:
        raise ValueError(f"unknown disposition {disposition}")
    await _ensure_position(conn, node_id, sku)
    if not await _ledger(conn, node_id, sku, qty, 0, reason, event_id, order_id, actor, disposition):
        return False
    await conn.execute(
        text(f"UPDATE inventory_positions SET {disposition} = {disposition} + :q, updated_at = now()"
             " WHERE node_id = :n AND sku = :s"),
        dict(q=qty, n=node_id, s=sku),
    )
    return True


async def inspect(
    conn: AsyncConnection, node_id: str, sku: str, qty: int, to: str, event_id: str, actor: str,
) -> bool:
    """Units pending inspection are found sellable or damaged. False if this inspection was already recorded."""
    pending = (await conn.execute(
        text("SELECT pending_inspection FROM inventory_positions WHERE node_id = :n AND sku = :s FOR UPDATE"),
        dict(n=node_id, s=sku),
    )).scalar_one_or_none()
    if not await _ledger(conn, node_id, sku, -qty, 0, f"inspected_{to}", f"{event_id}:out", None, actor,
                         "pending_inspection"):
        return False
    if pending is None or pending < qty:
        raise ValueError(f"only {pending or 0} units of {sku} are pending inspection at {node_id}")
    await conn.execute(
        text("UPDATE inventory_positions SET pending_inspection = pending_inspection - :q, updated_at = now()"
             " WHERE node_id = :n AND sku = :s"),
        dict(q=qty, n=node_id, s=sku),
    )
    return await receive_units(conn, node_id, sku, qty, to, "inspected", f"{event_id}:in", actor=actor)


_RESERVE_SQL = """
WITH arg AS (
  SELECT CAST(:r AS varchar) AS r, CAST(:o AS varchar) AS o, CAST(:f AS varchar) AS f, CAST(:l AS varchar) AS l,
         CAST(:n AS varchar) AS n, CAST(:s AS varchar) AS s, CAST(:q AS integer) AS q,
         CAST(:at AS timestamptz) AS at, CAST(:x AS timestamptz) AS x, CAST(:t AS varchar) AS t,
         COALESCE(cv.buffer_units, 0) AS bu, COALESCE(cv.buffer_pct, 0) AS bp
  FROM (SELECT 1) one LEFT JOIN channel_views cv ON cv.channel = CAST(:c AS varchar)
), existing AS (
  SELECT 1 FROM reservations, arg WHERE reservation_id = arg.r
), pos AS (
  UPDATE inventory_positions SET reserved = reserved + arg.q, updated_at = now() FROM arg
  WHERE node_id = arg.n AND sku = arg.s AND {ats} >= arg.q AND NOT EXISTS (SELECT 1 FROM existing)
  RETURNING node_id
), ins AS (
  INSERT INTO reservations (reservation_id, order_id, fulfillment_id, line_id, node_id, sku, qty, status,
                            capacity_day, expires_at, created_at, updated_at)
  SELECT arg.r, arg.o, arg.f, arg.l, arg.n, arg.s, arg.q, 'held', CAST(arg.at AT TIME ZONE nodes.timezone AS date),
         arg.x, now(), now()
  FROM arg JOIN nodes ON nodes.node_id = arg.n WHERE EXISTS (SELECT 1 FROM pos)
  ON CONFLICT (reservation_id) DO NOTHING RETURNING reservation_id
), led AS (
  INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, order_id, actor, at)
  SELECT arg.n, arg.s, 0, arg.q, 'reserve', 'reserve:' || arg.r, arg.o, 'system', now() FROM arg, ins
  ON CONFLICT (event_id) DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM existing) AS existed, EXISTS (SELECT 1 FROM pos) AS reserved,
       EXISTS (SELECT 1 FROM ins) AS inserted
"""


# A channel with a buffer may only take what it leaves the others (no channel view: no buffer).
# Run on the driver connection (psycopg placeholders): it is the hot path of every order.
_RESERVE = re.sub(r":([a-z]+)\b(?!:)", r"%(\1)s", _RESERVE_SQL.format(ats=channel_ats_sql(
    "arg.bu", "arg.bp", protected_for_others_sql("arg.n", "arg.s", "arg.t"))))


class ConcurrentDuplicate(Exception):
    """The same reservation was being made by another transaction: roll back and retry (it will be found)."""


async def reserve(conn: AsyncConnection, order_id: str, holds: Iterable[Hold], at: datetime,
                  channel: Optional[str] = None, expires_at: Optional[datetime] = None,
                  tier: Optional[str] = None) -> list[Hold]:
    """Hold stock for every line, all or nothing. Returns the holds that could not be met (empty = done).

    One statement per hold: a reservation that already exists is left as it is (retries are no-ops);
    otherwise the stock moves only if the position has enough as this customer sees it (the channel's
    buffer, from channel_views, and stock protected for other tiers), and the row and its ledger entry go in with it. A hold that falls short changes nothing; with several holds, a savepoint undoes the ones
    that had landed. Capacity is counted on each node's own calendar day.
    """
    holds = sorted(holds, key=lambda h: (h.node_id, h.sku, h.fulfillment_id, h.line_id))
    if len(holds) > BATCH_HOLDS:
        return await _reserve_many(conn, order_id, holds, at, channel, expires_at, tier)
    short: list[Hold] = []
    savepoint = await conn.begin_nested() if len(holds) > 1 else None
    driver = (await conn.get_raw_connection()).driver_connection
    note_written(conn)
    for h in holds:
        cur = await driver.execute(_RESERVE, dict(
            r=reservation_id(h.fulfillment_id, h.line_id), o=order_id, f=h.fulfillment_id, l=h.line_id,
            n=h.node_id, s=h.sku, q=h.qty, at=at, x=expires_at, c=channel, t=tier))
        existed, reserved, inserted = await cur.fetchone()
        if reserved and not inserted:
            raise ConcurrentDuplicate(reservation_id(h.fulfillment_id, h.line_id))
        if not existed and not reserved:
            short.append(h)
    if savepoint is not None:
        await (savepoint.rollback() if short else savepoint.commit())
    return await _unless_made_meanwhile(conn, holds, short)


async def _unless_made_meanwhile(conn: AsyncConnection, holds: list[Hold], short: list[Hold]) -> list[Hold]:
    """A run of the same reservations that committed while this one waited for its lock (a retry racing the first
    attempt) took the stock this one found short: if every reservation exists now, the work is done, not short."""
    if not short:
        return short
    rids = [reservation_id(h.fulfillment_id, h.line_id) for h in holds]
    made = (await conn.execute(text("SELECT COUNT(*) FROM reservations WHERE reservation_id = ANY(:r)"),
                               {"r": rids})).scalar_one()
    return [] if made == len(rids) else short


# Past this many lines a reservation is made per position (one conditional UPDATE for all of an order's units
# of a SKU at a node) and its rows in bulk: a 20,000-line order is a thousand statements, not twenty thousand.
BATCH_HOLDS = 50

# The position's share of a batch: the same condition as _RESERVE's, for the total of the order's new holds.
_RESERVE_POSITION = re.sub(r":([a-z]+)\b(?!:)", r"%(\1)s", """
WITH arg AS (
  SELECT CAST(:n AS varchar) AS n, CAST(:s AS varchar) AS s, CAST(:q AS integer) AS q, CAST(:t AS varchar) AS t,
         COALESCE(cv.buffer_units, 0) AS bu, COALESCE(cv.buffer_pct, 0) AS bp
  FROM (SELECT 1) one LEFT JOIN channel_views cv ON cv.channel = CAST(:c AS varchar)
)
UPDATE inventory_positions SET reserved = reserved + arg.q, updated_at = now() FROM arg
WHERE node_id = arg.n AND sku = arg.s AND {ats} >= arg.q RETURNING node_id
""".format(ats=channel_ats_sql("arg.bu", "arg.bp", protected_for_others_sql("arg.n", "arg.s", "arg.t"))))

_INSERT_RESERVATIONS = text(
    "INSERT INTO reservations (reservation_id, order_id, fulfillment_id, line_id, node_id, sku, qty, status,"
    " capacity_day, expires_at, created_at, updated_at)"
    " SELECT r.rid, :o, r.f, r.l, r.n, r.s, r.q, 'held', CAST(CAST(:at AS timestamptz) AT TIME ZONE nodes.timezone AS date),"
    " CAST(:x AS timestamptz), now(), now()"
    " FROM unnest(CAST(:rid AS varchar[]), CAST(:f AS varchar[]), CAST(:l AS varchar[]), CAST(:n AS varchar[]),"
    " CAST(:s AS varchar[]), CAST(:q AS integer[])) AS r(rid, f, l, n, s, q) JOIN nodes ON nodes.node_id = r.n"
    " ON CONFLICT (reservation_id) DO NOTHING RETURNING reservation_id")
_INSERT_RESERVE_LEDGER = text(
    "INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, order_id, actor, at)"
    " SELECT r.n, r.s, 0, r.q, 'reserve', 'reserve:' || r.rid, :o, 'system', now()"
    " FROM unnest(CAST(:rid AS varchar[]), CAST(:n AS varchar[]), CAST(:s AS varchar[]), CAST(:q AS integer[]))"
    " AS r(rid, n, s, q) ON CONFLICT (event_id) DO NOTHING")


async def _reserve_many(conn: AsyncConnection, order_id: str, holds: list[Hold], at: datetime,
                        channel: Optional[str], expires_at: Optional[datetime], tier: Optional[str]) -> list[Hold]:
    """``reserve`` for many lines: the reservations that exist already are left as they are; the others move the
    stock per position (in (node, sku) order) only if each position has enough for all of them, then go in
    with their ledger rows in bulk. All or nothing under a savepoint; the holds of a short position come back."""
    rids = {reservation_id(h.fulfillment_id, h.line_id): h for h in holds}
    existing = {r.reservation_id for r in (await conn.execute(
        text("SELECT reservation_id FROM reservations WHERE reservation_id = ANY(:r)"), {"r": list(rids)})).all()}
    new = [(rid, h) for rid, h in rids.items() if rid not in existing]
    per_position: dict[tuple[str, str], int] = {}
    for _, h in new:
        per_position[(h.node_id, h.sku)] = per_position.get((h.node_id, h.sku), 0) + h.qty
    savepoint = await conn.begin_nested()
    driver = (await conn.get_raw_connection()).driver_connection
    note_written(conn)
    short_positions = set()
    for (node_id, sku), qty in sorted(per_position.items()):
        cur = await driver.execute(_RESERVE_POSITION, dict(n=node_id, s=sku, q=qty, c=channel, t=tier))
        if await cur.fetchone() is None:
            short_positions.add((node_id, sku))
    if short_positions:
        await savepoint.rollback()
        return await _unless_made_meanwhile(conn, holds, [h for _, h in new if (h.node_id, h.sku) in short_positions])
    columns = {"rid": [rid for rid, _ in new], "f": [h.fulfillment_id for _, h in new], "l": [h.line_id for _, h in new],
               "n": [h.node_id for _, h in new], "s": [h.sku for _, h in new], "q": [h.qty for _, h in new]}
    inserted = (await conn.execute(_INSERT_RESERVATIONS, {**columns, "o": order_id, "at": at, "x": expires_at})).all()
    if len(inserted) != len(new):
        raise ConcurrentDuplicate(f"{len(new) - len(inserted)} reservations of {order_id}")
    await conn.execute(_INSERT_RESERVE_LEDGER, {k: columns[k] for k in ("rid", "n", "s", "q")} | {"o": order_id})
    await savepoint.commit()
    return []


@dataclass(frozen=True)
class Claim:
    line_id: str
    supply_id: str
    sku: str
    qty: int


async def claim_supply(conn: AsyncConnection, order_id: str, line_ids: Iterable[str],
                       claims: Iterable[Claim]) -> list[Claim]:
    """Replace these lines' claims on incoming supply; returns the claims that no longer fit.

    Each supply row is locked (in supply_id order, after any positions: no deadlocks) and claimed
    only up to its quantity, so two waiting orders are never promised the same incoming unit.
    Run inside the caller's transaction; with a short claim the caller rolls back.
    """
    await release_claims(conn, order_id, line_ids)
    short = []
    for c in sorted(claims, key=lambda c: (c.supply_id, c.line_id)):
        free = (await conn.execute(text(
            "SELECT s.qty - COALESCE((SELECT SUM(qty) FROM supply_claims c WHERE c.supply_id = s.supply_id), 0)"
            " FROM incoming_supply s WHERE s.supply_id = :s FOR UPDATE"), {"s": c.supply_id})).scalar()
        if free is None or free < c.qty:
            short.append(c)
            continue
        await conn.execute(text(
            "INSERT INTO supply_claims (order_id, line_id, supply_id, sku, qty) VALUES (:o, :l, :s, :k, :q)"
            " ON CONFLICT (order_id, line_id, supply_id) DO UPDATE SET qty = supply_claims.qty + EXCLUDED.qty"),
            {"o": order_id, "l": c.line_id, "s": c.supply_id, "k": c.sku, "q": c.qty})
    return short


async def release_claims(conn: AsyncConnection, order_id: str, line_ids: Optional[Iterable[str]] = None) -> int:
    """Give back an order's claims on incoming supply (all of them, or these lines')."""
    res = await conn.execute(text(
        "DELETE FROM supply_claims WHERE order_id = :o"
        " AND (CAST(:l AS varchar[]) IS NULL OR line_id = ANY(CAST(:l AS varchar[])))"),
        {"o": order_id, "l": None if line_ids is None else sorted(set(line_ids))})
    return res.rowcount


async def set_reserved_qty(
    conn: AsyncConnection, order_id: str, fulfillment_id: str, line_id: str, qty: int,
    reason: str, not_found: int = 0,
) -> int:
    """Bring one reservation down to ``qty`` (0 = released). Idempotent: it sets a target.

    ``not_found`` units were missing on the shelf at pick time: on hand goes down by them too.
    Returns the units freed by this call.
    """
    rid = reservation_id(fulfillment_id, line_id)
    row = (await conn.execute(
        text("SELECT node_id, sku, qty, status FROM reservations WHERE reservation_id = :r FOR UPDATE"),
        {"r": rid},
    )).first()
    freed = 0
    if row is not None and row.status in ACTIVE and qty < row.qty:
        freed = row.qty - qty
        await conn.execute(
            text(
                "UPDATE inventory_positions SET reserved = reserved - :f, updated_at = now()"
                " WHERE node_id = :n AND sku = :s"
            ),
            dict(f=freed, n=row.node_id, s=row.sku),
        )
        await conn.execute(
            text(
                "UPDATE reservations SET qty = :q, status = CASE WHEN :q = 0 THEN 'released' ELSE status END,"
                " updated_at = now() WHERE reservation_id = :r"
            ),
            dict(q=qty, r=rid),
        )
        await _ledger(conn, row.node_id, row.sku, 0, -freed, reason, f"release:{rid}:{qty}", order_id)
    if row is not None and not_found > 0:
        # Units missing on the shelf come off on hand, but never below what is still held.
        pos = (await conn.execute(
            text("SELECT on_hand, reserved FROM inventory_positions WHERE node_id = :n AND sku = :s FOR UPDATE"),
            dict(n=row.node_id, s=row.sku),
        )).first()
        applied = min(not_found, max(pos.on_hand - pos.reserved, 0))
        if applied and await _ledger(conn, row.node_id, row.sku, -applied, 0, "short_pick", f"not_found:{rid}",
                                     order_id):
            await conn.execute(
                text("UPDATE inventory_positions SET on_hand = on_hand - :k, updated_at = now()"
                     " WHERE node_id = :n AND sku = :s"),
                dict(k=applied, n=row.node_id, s=row.sku),
            )
    return freed


async def release_hold(conn: AsyncConnection, hold_id: str, reason: str) -> int:
    """Give back everything a checkout hold still holds. Idempotent."""
    rows = (await conn.execute(
        text("SELECT line_id FROM reservations WHERE fulfillment_id = :h AND status = 'held' ORDER BY node_id, sku"),
        {"h": hold_id},
    )).all()
    freed = 0
    for r in rows:
        freed += await set_reserved_qty(conn, hold_id, hold_id, r.line_id, 0, reason)
    return freed


async def expire_holds(conn: AsyncConnection, now: datetime, limit: int = 500) -> list[str]:
    """Release checkout holds past their expiry; concurrent sweepers skip each other's rows."""
    ids = [r.fulfillment_id for r in (await conn.execute(
        text("SELECT DISTINCT fulfillment_id FROM reservations WHERE status = 'held' AND expires_at < :now"
             " LIMIT :l"), dict(now=now, l=limit),
    )).all()]
    for hold_id in sorted(ids):
        await release_hold(conn, hold_id, "hold_expired")
    return sorted(ids)


async def receive_transfer(conn: AsyncConnection, order_id: str, transfer_id: str, pickup_id: str, node_id: str,
                           lines: list[tuple[str, str, int]]) -> None:
    """A transfer lands at the pickup store: on hand and reserved grow together (held for the pickup waiting
    there, never sellable to anyone else), each line once (a retry finds its ledger row and changes nothing)."""
    for line_id, sku, qty in sorted(lines, key=lambda l: (l[1], l[0])):
        await _ensure_position(conn, node_id, sku)
        if not await _ledger(conn, node_id, sku, qty, qty, "transfer_received", f"transfer:{transfer_id}:{line_id}",
                             order_id):
            continue
        await conn.execute(text(
            "UPDATE inventory_positions SET on_hand = on_hand + :q, reserved = reserved + :q, updated_at = now()"
            " WHERE node_id = :n AND sku = :s"), dict(q=qty, n=node_id, s=sku))
        await conn.execute(text(
            "INSERT INTO reservations (reservation_id, order_id, fulfillment_id, line_id, node_id, sku, qty, status,"
            " capacity_day, created_at, updated_at) SELECT :r, :o, :f, :l, nodes.node_id, :s, :q, 'held',"
            " CAST(now() AT TIME ZONE nodes.timezone AS date), now(), now() FROM nodes WHERE node_id = :n"
            " ON CONFLICT (reservation_id) DO NOTHING"),
            dict(r=reservation_id(pickup_id, line_id), o=order_id, f=pickup_id, l=line_id, n=node_id, s=sku, q=qty))


async def merge(conn: AsyncConnection, order_id: str, into: str, merged: list[str]) -> int:
    """Planned fulfillments consolidated into one (a wave's single shipment): their held reservations become
    ``into``'s, line by line, without touching stock (same node, same units). Idempotent: a repeat finds none."""
    rows = (await conn.execute(text(
        "DELETE FROM reservations WHERE order_id = :o AND fulfillment_id = ANY(:f) AND status = 'held'"
        " RETURNING line_id, node_id, sku, qty, capacity_day"), {"o": order_id, "f": merged})).all()
    for r in rows:
        await conn.execute(text(
            "INSERT INTO reservations (reservation_id, order_id, fulfillment_id, line_id, node_id, sku, qty, status,"
            " capacity_day, created_at, updated_at) VALUES (:r, :o, :f, :l, :n, :s, :q, 'held', :d, now(), now())"
            " ON CONFLICT (reservation_id) DO UPDATE SET qty = reservations.qty + EXCLUDED.qty, updated_at = now()"),
            dict(r=reservation_id(into, r.line_id), o=order_id, f=into, l=r.line_id, n=r.node_id, s=r.sku, q=r.qty,
                 d=r.capacity_day))
    return len(rows)


async def commit(conn: AsyncConnection, order_id: str, fulfillment_id: str) -> int:
    """Released to the node: its reservations are committed to that fulfillment, each with its ledger row, in one
    statement whatever the number of lines. Idempotent."""
    return int((await conn.execute(text(
        "WITH c AS (UPDATE reservations SET status = 'committed', updated_at = now()"
        "  WHERE fulfillment_id = :f AND status = 'held' RETURNING reservation_id, node_id, sku),"
        " l AS (INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, order_id,"
        "  actor, at) SELECT node_id, sku, 0, 0, 'commit', 'commit:' || reservation_id, :o, 'system', now() FROM c"
        "  ON CONFLICT (event_id) DO NOTHING)"
        " SELECT COUNT(*) FROM c"), {"f": fulfillment_id, "o": order_id})).scalar_one())


async def consume(conn: AsyncConnection, order_id: str, fulfillment_id: str, line_ids: Iterable[str]) -> int:
    """Shipped: the held units leave on hand and reserved together. Idempotent by reservation status."""
    line_ids = sorted(line_ids)
    if len(line_ids) > BATCH_HOLDS:
        return await _consume_many(conn, order_id, fulfillment_id, line_ids)
    units = 0
    for line_id in line_ids:
        rid = reservation_id(fulfillment_id, line_id)
        row = (await conn.execute(
            text(
                "UPDATE reservations SET status = 'consumed', updated_at = now()"
                " WHERE reservation_id = :r AND status IN ('held', 'committed') RETURNING node_id, sku, qty"
            ),
            {"r": rid},
        )).first()
        if row is None or row.qty == 0:
            continue
        # A count may have found fewer units than were held: on hand never goes below zero.
        on_hand = (await conn.execute(
            text("SELECT on_hand FROM inventory_positions WHERE node_id = :n AND sku = :s FOR UPDATE"),
            dict(n=row.node_id, s=row.sku),
        )).scalar_one()
        leaving = min(row.qty, on_hand)
        await conn.execute(
            text(
                "UPDATE inventory_positions SET on_hand = on_hand - :l, reserved = reserved - :q, updated_at = now()"
                " WHERE node_id = :n AND sku = :s"
            ),
            dict(l=leaving, q=row.qty, n=row.node_id, s=row.sku),
        )
        await _ledger(conn, row.node_id, row.sku, -leaving, -row.qty, "ship", f"consume:{rid}", order_id)
        units += row.qty
    return units


async def _consume_many(conn: AsyncConnection, order_id: str, fulfillment_id: str, line_ids: list[str]) -> int:
    """``consume`` for many lines, in four statements: the same stock, rows and ledger as line by line (lines of
    one position take what is on hand in line order). Reservations first, then positions in (node, sku) order,
    as everywhere else."""
    rids = {reservation_id(fulfillment_id, l): l for l in line_ids}
    rows = sorted(((rids[r.reservation_id], r) for r in (await conn.execute(text(
        "UPDATE reservations SET status = 'consumed', updated_at = now()"
        " WHERE reservation_id = ANY(:r) AND status IN ('held', 'committed')"
        " RETURNING reservation_id, node_id, sku, qty"), {"r": list(rids)})).all() if r.qty), key=lambda x: x[0])
    if not rows:
        return 0
    positions = sorted({(r.node_id, r.sku) for _, r in rows})
    on_hand = {(p.node_id, p.sku): p.on_hand for p in (await conn.execute(text(
        "SELECT p.node_id, p.sku, p.on_hand FROM inventory_positions p"
        " JOIN unnest(CAST(:n AS varchar[]), CAST(:s AS varchar[])) AS k(n, s) ON p.node_id = k.n AND p.sku = k.s"
        " ORDER BY p.node_id, p.sku FOR UPDATE OF p"),
        {"n": [n for n, _ in positions], "s": [s for _, s in positions]})).all()}
    # A count may have found fewer units than were held: on hand never goes below zero.
    leaving, moved = [], {k: [0, 0] for k in positions}
    for _, r in rows:
        key = (r.node_id, r.sku)
        n = min(r.qty, on_hand[key] - moved[key][0])
        leaving.append(n)
        moved[key][0] += n
        moved[key][1] += r.qty
    await conn.execute(text(
        "UPDATE inventory_positions p SET on_hand = p.on_hand - m.l, reserved = p.reserved - m.q, updated_at = now()"
        " FROM unnest(CAST(:n AS varchar[]), CAST(:s AS varchar[]), CAST(:l AS integer[]), CAST(:q AS integer[]))"
        " AS m(n, s, l, q) WHERE p.node_id = m.n AND p.sku = m.s"),
        {"n": [n for n, _ in positions], "s": [s for _, s in positions],
         "l": [moved[k][0] for k in positions], "q": [moved[k][1] for k in positions]})
    await conn.execute(text(
        "INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason, event_id, order_id, actor, at)"
        " SELECT r.n, r.s, -r.l, -r.q, 'ship', 'consume:' || r.rid, :o, 'system', now()"
        " FROM unnest(CAST(:rid AS varchar[]), CAST(:n AS varchar[]), CAST(:s AS varchar[]), CAST(:l AS integer[]),"
        " CAST(:q AS integer[])) AS r(rid, n, s, l, q) ON CONFLICT (event_id) DO NOTHING"),
        {"rid": [r.reservation_id for _, r in rows], "n": [r.node_id for _, r in rows], "s": [r.sku for _, r in rows],
         "l": leaving, "q": [r.qty for _, r in rows], "o": order_id})
    return sum(r.qty for _, r in rows)


async def adjust(
    conn: AsyncConnection, node_id: str, sku: str, delta: int, reason: str, event_id: str,
    order_id: Optional[str] = None, actor: str = "system",
) -> bool:
    """Add ``delta`` to on hand (a receipt, a restock, a count correction). False if already applied.

    On hand never goes below zero; the ledger records the change actually applied.
    """
    if await _ensure_position(conn, node_id, sku):
        await apply_safety_defaults(conn, node_id, sku)
    on_hand = (await conn.execute(
        text("SELECT on_hand FROM inventory_positions WHERE node_id = :n AND sku = :s FOR UPDATE"),
        dict(n=node_id, s=sku),
    )).scalar_one()
    applied = max(on_hand + delta, 0) - on_hand
    if not await _ledger(conn, node_id, sku, applied, 0, reason, event_id, order_id, actor):
        return False
    await conn.execute(
        text("UPDATE inventory_positions SET on_hand = on_hand + :d, updated_at = now() WHERE node_id = :n AND sku = :s"),
        dict(n=node_id, s=sku, d=applied),
    )
    return True


async def set_snapshot(
    conn: AsyncConnection, node_id: str, sku: str, on_hand: int, safety_stock: Optional[int],
    as_of: datetime, actor: str,
) -> bool:
    """Apply a count taken at ``as_of``, unless the position already holds one as new. False if ignored.

    The count was true at ``as_of``: movements recorded since then (shipments, receipts, restocks)
    stay on top of it, and reservations in flight are untouched.
    """
    row = (await conn.execute(
        text("SELECT on_hand, as_of FROM inventory_positions WHERE node_id = :n AND sku = :s FOR UPDATE"),
        dict(n=node_id, s=sku),
    )).first()
    if row is not None and row.as_of is not None and row.as_of >= as_of:
        return False
    since = (await conn.execute(
        text("SELECT COALESCE(SUM(on_hand_delta), 0) FROM inventory_ledger WHERE node_id = :n AND sku = :s"
             " AND at > :a AND reason NOT IN ('snapshot', 'import')"),
        dict(n=node_id, s=sku, a=as_of),
    )).scalar_one()
    before = row.on_hand if row is not None else 0
    counted = max(on_hand + int(since), 0)
    # A safety stock in the snapshot becomes the position's own; without one, the defaults apply.
    await conn.execute(
        text(
            "INSERT INTO inventory_positions (node_id, sku, on_hand, reserved, safety_stock, safety_stock_override,"
            " as_of, updated_at) VALUES (:n, :s, :oh, 0, COALESCE(:ss, 0), :ss, :a, now())"
            " ON CONFLICT (node_id, sku) DO UPDATE SET on_hand = :oh,"
            " safety_stock = COALESCE(:ss, inventory_positions.safety_stock),"
            " safety_stock_override = COALESCE(:ss, inventory_positions.safety_stock_override),"
            " as_of = :a, updated_at = now()"
        ),
        dict(n=node_id, s=sku, oh=counted, ss=safety_stock, a=as_of),
    )
    if row is None and safety_stock is None:
        await apply_safety_defaults(conn, node_id, sku)
    if counted != before:
        await _ledger(conn, node_id, sku, counted - before, 0, "snapshot",
                      f"snapshot:{node_id}:{sku}:{as_of.isoformat()}", actor=actor)
    return True
