"""Payment gateway: authorize, capture, void, refund with idempotency keys."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Protocol

from adapters.base import SimulatedSystem


class PaymentGateway(Protocol):
    async def call(self, kind: str, key: str, amount: Decimal, currency: str) -> dict: ...


class SimulatedPaymentGateway(SimulatedSystem):
    system = "payments"

    def __init__(self, *args, decline_rate: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.decline_rate = decline_rate

    async def call(self, kind: str, key: str, amount: Decimal, currency: str) -> dict:
        async def produce() -> dict:
            declined = kind == "authorization" and self.rng().random() < self.decline_rate
            ref = "pay_" + hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:16]
            return {"status": "declined" if declined else "succeeded", "gateway_ref": ref,
                    "amount": str(amount), "currency": currency}

        return await self._idempotent(f"{kind}:{key}", produce)
