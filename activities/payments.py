"""payments.*: every call carries an idempotency key derived from order, fulfillment or return ids."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from sqlalchemy import text
from temporalio import activity

from activities.deps import Deps
from models.messages import CreditCheck, CreditVerdict, PaymentRecord, PaymentRequest, cents
from nodal.logging import get_logger


class PaymentActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="payments.call")
    async def call(self, req: PaymentRequest) -> PaymentRecord:
        if req.kind == "invoice" or req.on_account:
            # Billed to (or credited on) the customer's account: a record of ours (the ERP collects it), not a
            # gateway call.
            ref = "inv_" + hashlib.sha256(req.idempotency_key.encode()).hexdigest()[:16]
            resp = {"amount": str(req.amount), "status": "succeeded", "gateway_ref": ref}
        else:
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

    @activity.defn(name="payments.credit_check")
    async def credit_check(self, req: CreditCheck) -> CreditVerdict:
        """Does the customer's open balance plus this order stay within its credit limit? The open balance: its
        other orders on account still open (their live total), and the invoices of its closed ones not yet due
        (Nodal hears of no payments received, so an invoice counts until its due date). Checks of one customer
        run one at a time; orders placed meanwhile are counted from their intake, so two at once never both
        pass on the same headroom."""
        async with self.deps.db.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('credit:' || :c))"), {"c": req.customer_id})
            balance = (await conn.execute(text(_OPEN_BALANCE), {"c": req.customer_id, "o": req.order_id,
                                                                 "closed": list(CLOSED), "at": req.at})).scalar_one()
        balance = cents(balance)
        ok = balance + req.amount <= req.credit_limit
        get_logger(order_id=req.order_id).info("payment.credit_check", ok=ok, open_balance=str(balance),
                                               amount=str(req.amount), credit_limit=str(req.credit_limit))
        return CreditVerdict(ok=ok, open_balance=balance, reason="" if ok else (
            f"credit limit {cents(req.credit_limit)} exceeded: open balance {balance} + this order {cents(req.amount)}"))


CLOSED = ("delivered", "returned", "partially_returned", "cancelled", "rejected")
# Open orders count whole; a closed one, its invoices not yet due less what its returns credited.
_OPEN_BALANCE = (
    "SELECT COALESCE(SUM(o.total) FILTER (WHERE o.status <> ALL(:closed)), 0)"
    " + COALESCE((SELECT SUM(GREATEST(owed, 0)) FROM (SELECT SUM(CASE WHEN p.kind = 'invoice' AND p.at +"
    "   make_interval(days => CAST(substring(c.credit_terms FROM 4) AS integer)) > :at THEN p.amount"
    "   WHEN p.kind = 'refund' THEN -p.amount ELSE 0 END) AS owed"
    "   FROM payments p JOIN orders c ON c.order_id = p.order_id"
    "   WHERE c.customer_id = :c AND c.order_id <> :o AND c.credit_terms IS NOT NULL AND c.status = ANY(:closed)"
    "   AND p.status = 'succeeded' GROUP BY c.order_id) AS closed_orders), 0)"
    " FROM orders o WHERE o.customer_id = :c AND o.order_id <> :o AND o.credit_terms IS NOT NULL")
