"""Payment gateway: authorize, capture, void, refund with idempotency keys."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Optional, Protocol

from sqlalchemy import text

from adapters.base import SimulatedSystem


class PaymentGateway(Protocol):
    async def call(self, kind: str, key: str, amount: Decimal, currency: str, at: Optional[datetime] = None,
                   authorization: Optional[str] = None) -> dict: ...


class SimulatedPaymentGateway(SimulatedSystem):
    """A card gateway: authorizations are declined at ``decline_rate`` and hold for ``authorization_validity``;
    a capture names its authorization and is declined when that is missing, declined or expired.

    It keeps time by the calls' own timestamps (the workflow's clock), so time-skipped tests see authorizations
    expire as a real gateway's would."""

    system = "payments"

    def __init__(self, *args, decline_rate: float = 0.0, authorization_validity: timedelta = timedelta(days=7),
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.decline_rate = decline_rate
        self.validity = authorization_validity

    async def call(self, kind: str, key: str, amount: Decimal, currency: str, at: Optional[datetime] = None,
                   authorization: Optional[str] = None) -> dict:
        async def produce() -> dict:
            declined = kind == "authorization" and self.rng().random() < self.decline_rate
            why = await self._capture_refused(authorization, at) if kind == "capture" and authorization else None
            ref = "pay_" + hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:16]
            answer = {"status": "declined" if declined or why else "succeeded", "gateway_ref": ref,
                      "amount": str(amount), "currency": currency, "at": at.isoformat() if at else None}
            return {**answer, "reason": why} if why else answer

        return await self._idempotent(f"{kind}:{key}", produce)

    async def _capture_refused(self, authorization: str, at: Optional[datetime]) -> Optional[str]:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT response FROM adapter_calls WHERE system = :s AND idempotency_key = :k"),
                dict(s=self.system, k=f"authorization:{authorization}"))).first()
        if row is None or row.response.get("status") != "succeeded":
            return "no authorization to capture against"
        made = row.response.get("at")
        if at is not None and made and at - datetime.fromisoformat(made) > self.validity:
            return "authorization expired"
        return None
