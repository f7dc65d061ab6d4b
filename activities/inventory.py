"""inventory.*: reservations and stock movements, each idempotent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.deps import Deps
from inventory import service
from models.messages import (
    ConsumeRequest, LineQty, MergeReservations, ReceiveTransfer, ReleaseClaims, ReservationTarget, ReserveRequest, ReserveResult, RestockRequest,
)
from nodal.db import Database
from nodal.logging import get_logger


async def reserve_request(db: Database, req: ReserveRequest) -> ReserveResult:
    """Reserve a plan, all or nothing; a checkout hold being converted is given back in the same transaction,
    and the plan's claims on incoming supply are taken in it too."""
    holds = [service.Hold(f.fulfillment_id, l.line_id, f.node_id, l.sku, l.qty)
             for f in req.fulfillments for l in f.lines]
    claims = [service.Claim(c.line_id, c.supply_id, c.sku, c.qty) for c in req.supply_claims]
    short_claims: list[service.Claim] = []
    if len(holds) == 1 and not req.hold_id and not req.claim_lines:
        # One statement is atomic on its own: no transaction round trips (most orders have one line).
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            short = await service.reserve(conn, req.order_id, holds, req.at, req.channel, tier=req.customer_tier)
    else:
        async with db.engine.begin() as conn:
            if req.hold_id:
                await service.release_hold(conn, req.hold_id, "hold_converted")
                await conn.execute(text("UPDATE checkout_holds SET order_id = :o WHERE hold_id = :h"),
                                   {"o": req.order_id, "h": req.hold_id})
            short = await service.reserve(conn, req.order_id, holds, req.at, req.channel, tier=req.customer_tier)
            if not short and req.claim_lines:
                short_claims = await service.claim_supply(conn, req.order_id, req.claim_lines, claims)
            if short or short_claims:
                await conn.rollback()  # the converted hold stays a hold
    if short or short_claims:
        get_logger(order_id=req.order_id).info("inventory.reserve_short", nodes=sorted({h.node_id for h in short}),
                                               supply=sorted({c.supply_id for c in short_claims}))
        return ReserveResult(ok=False, short=[LineQty(line_id=h.line_id, sku=h.sku, qty=h.qty) for h in short]
                             + [LineQty(line_id=c.line_id, sku=c.sku, qty=c.qty) for c in short_claims],
                             short_nodes=sorted({h.node_id for h in short}))
    return ReserveResult(ok=True)


class InventoryActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="inventory.reserve")
    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        result = await reserve_request(self.deps.db, req)
        if not result.ok:
            metrics.reservation_conflict()
        return result

    @activity.defn(name="inventory.release")
    async def set_reservations(self, targets: list[ReservationTarget]) -> int:
        """Bring each reservation to its target; answers with the units they still hold (the state reached, the
        same on a retry, not what this attempt moved)."""
        async with self.deps.db.engine.begin() as conn:
            for t in sorted(targets, key=lambda t: (t.node_id, t.sku, t.fulfillment_id, t.line_id)):
                await service.set_reserved_qty(
                    conn, t.order_id, t.fulfillment_id, t.line_id, t.qty, t.reason, t.not_found)
            return int((await conn.execute(text(
                "SELECT COALESCE(SUM(qty), 0) FROM reservations WHERE reservation_id = ANY(:r)"
                " AND status IN ('held', 'committed')"),
                {"r": [service.reservation_id(t.fulfillment_id, t.line_id) for t in targets]})).scalar_one())

    @activity.defn(name="inventory.release_claims")
    async def release_claims(self, req: ReleaseClaims) -> int:
        async with self.deps.db.engine.begin() as conn:
            return await service.release_claims(conn, req.order_id, req.line_ids)

    @activity.defn(name="inventory.expire_holds")
    async def expire_holds(self, at: datetime) -> list[str]:
        async with self.deps.db.engine.begin() as conn:
            expired = await service.expire_holds(conn, at)
        if expired:
            get_logger().info("inventory.holds_expired", count=len(expired))
        return expired

    # These answer with the state reached (units committed, shipped, restocked), not with what this call
    # changed: a retry after a lost answer then answers the same as the first call would have.
    @activity.defn(name="inventory.merge")
    async def merge(self, req: MergeReservations) -> int:
        async with self.deps.db.engine.begin() as conn:
            return await service.merge(conn, req.order_id, req.into, req.merged)

    @activity.defn(name="inventory.commit")
    async def commit(self, req: ConsumeRequest) -> int:
        async with self.deps.db.engine.begin() as conn:
            await service.commit(conn, req.order_id, req.fulfillment_id)
            return await _units(conn, req.fulfillment_id, ("committed", "consumed"))

    @activity.defn(name="inventory.consume")
    async def consume(self, req: ConsumeRequest) -> int:
        lines = [l.line_id for l in req.lines]
        async with self.deps.db.engine.begin() as conn:
            await service.consume(conn, req.order_id, req.fulfillment_id, lines)
            return await _units(conn, req.fulfillment_id, ("consumed",), lines)

    @activity.defn(name="inventory.receive_transfer")
    async def receive_transfer(self, req: ReceiveTransfer) -> int:
        async with self.deps.db.engine.begin() as conn:
            await service.receive_transfer(conn, req.order_id, req.transfer_id, req.pickup_id, req.node_id,
                                           [(l.line_id, l.sku, l.qty) for l in req.lines])
            return await _units(conn, req.pickup_id, ("held", "committed", "consumed"))

    @activity.defn(name="inventory.restock")
    async def restock(self, req: RestockRequest) -> int:
        units = 0
        try:
            async with self.deps.db.engine.begin() as conn:
                for l in sorted(req.lines, key=lambda l: (l.sku, l.line_id)):
                    # Sellable units go back on the shelf; damaged and uninspected ones into their own buckets.
                    if l.qty > 0:
                        # False when a first attempt already received them: they are back all the same.
                        await service.receive_units(conn, req.node_id, l.sku, l.qty, l.disposition, "return_restock",
                                                    f"restock:{req.return_id}:{l.line_id}", req.order_id)
                        units += l.qty if l.disposition == "sellable" else 0
        except IntegrityError:
            # The node (or SKU) is not in the network: retrying cannot help, and nothing was written.
            raise ApplicationError(f"node {req.node_id} cannot receive these units", type="InvalidReturn",
                                   non_retryable=True)
        return units


async def _units(conn, fulfillment_id: str, statuses: tuple[str, ...], line_ids: list[str] | None = None) -> int:
    sql = "SELECT COALESCE(SUM(qty), 0) FROM reservations WHERE fulfillment_id = :f AND status = ANY(:s)"
    params: dict = {"f": fulfillment_id, "s": list(statuses)}
    if line_ids is not None:
        sql += " AND line_id = ANY(:l)"
        params["l"] = line_ids
    return int((await conn.execute(text(sql), params)).scalar_one())
