"""payments.*: every call carries an idempotency key derived from order, fulfillment or return ids."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from temporalio import activity

from activities.deps import Deps
from models.messages import PaymentRecord, PaymentRequest
from nodal.logging import get_logger


class PaymentActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="payments.call")
    async def call(self, req: PaymentRequest) -> PaymentRecord:
        resp = await self.deps.payments.call(req.kind, req.idempotency_key, req.amount, req.currency, req.at,
                                             req.authorization)
        record = PaymentRecord(
            payment_id=req.idempotency_key, kind=req.kind, amount=Decimal(resp["amount"]), currency=req.currency,
            status=resp["status"], gateway_ref=resp["gateway_ref"], fulfillment_id=req.fulfillment_id,
            return_id=req.return_id, at=req.at,
        )
        async with self.deps.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO payments (payment_id, order_id, kind, amount, currency, status, gateway_ref,"
                    " fulfillment_id, return_id, at) VALUES (:p, :o, :k, :a, :c, :s, :g, :f, :r, :t)"
                    " ON CONFLICT (payment_id) DO NOTHING"
                ),
                dict(p=record.payment_id, o=req.order_id, k=record.kind, a=record.amount, c=record.currency,
                     s=record.status, g=record.gateway_ref, f=record.fulfillment_id, r=record.return_id, t=req.at),
            )
        get_logger(order_id=req.order_id, fulfillment_id=req.fulfillment_id).info(
            "payment", kind=req.kind, amount=str(req.amount), status=record.status)
        return record
