"""inventory.*: reservations and stock movements, each idempotent."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from temporalio import activity

from activities.deps import Deps
from activities.network import local_day
from inventory import service
from inventory.channels import load_channel_view
from models.messages import (
    ConsumeRequest, LineQty, ReservationTarget, ReserveRequest, ReserveResult, RestockRequest,
)
from nodal.logging import get_logger


class _Rollback(Exception):
    pass


class InventoryActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="inventory.reserve")
    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        holds = [service.Hold(f.fulfillment_id, l.line_id, f.node_id, l.sku, l.qty)
                 for f in req.fulfillments for l in f.lines]
        short: list[service.Hold] = []
        try:
            async with self.deps.db.engine.begin() as conn:
                tz = dict((await conn.execute(text("SELECT node_id, timezone FROM nodes"))).all())
                view = await load_channel_view(conn, req.channel)
                # Capacity is counted per node-local calendar day.
                by_node: dict[str, list[service.Hold]] = {}
                for h in holds:
                    by_node.setdefault(local_day(tz.get(h.node_id, "UTC"), req.at).isoformat(), []).append(h)
                for day, group in sorted(by_node.items()):
                    short += await service.reserve(conn, req.order_id, group, date.fromisoformat(day), view)
                if short:
                    raise _Rollback
        except _Rollback:
            get_logger(order_id=req.order_id).info("inventory.reserve_short", nodes=sorted({h.node_id for h in short}))
            return ReserveResult(
                ok=False,
                short=[LineQty(line_id=h.line_id, sku=h.sku, qty=h.qty) for h in short],
                short_nodes=sorted({h.node_id for h in short}),
            )
        return ReserveResult(ok=True)

    @activity.defn(name="inventory.release")
    async def set_reservations(self, targets: list[ReservationTarget]) -> int:
        freed = 0
        async with self.deps.db.engine.begin() as conn:
            for t in sorted(targets, key=lambda t: (t.node_id, t.sku, t.fulfillment_id, t.line_id)):
                freed += await service.set_reserved_qty(
                    conn, t.order_id, t.fulfillment_id, t.line_id, t.qty, t.reason, t.not_found)
        return freed

    @activity.defn(name="inventory.commit")
    async def commit(self, req: ConsumeRequest) -> int:
        async with self.deps.db.engine.begin() as conn:
            return await service.commit(conn, req.order_id, req.fulfillment_id)

    @activity.defn(name="inventory.consume")
    async def consume(self, req: ConsumeRequest) -> int:
        async with self.deps.db.engine.begin() as conn:
            return await service.consume(conn, req.order_id, req.fulfillment_id, [l.line_id for l in req.lines])

    @activity.defn(name="inventory.restock")
    async def restock(self, req: RestockRequest) -> int:
        units = 0
        async with self.deps.db.engine.begin() as conn:
            for l in sorted(req.lines, key=lambda l: (l.sku, l.line_id)):
                if l.qty > 0 and await service.adjust(
                    conn, req.node_id, l.sku, l.qty, "return_restock",
                    f"restock:{req.return_id}:{l.line_id}", req.order_id,
                ):
                    units += l.qty
        return units
