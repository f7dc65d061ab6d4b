"""Carriers: rate shopping and labels (outbound and return) with tracking numbers."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Protocol

from adapters.base import SimulatedSystem

# carrier → service → (base, per kg)
RATE_CARDS = {
    "ups": {"ground": (Decimal("7.90"), Decimal("0.85")), "express": (Decimal("19.50"), Decimal("1.90"))},
    "fedex": {"ground": (Decimal("8.20"), Decimal("0.70")), "express": (Decimal("18.75"), Decimal("2.05"))},
}


class Carrier(Protocol):
    async def label(self, key: str, service: str, weight_kg: float, carrier: str | None = None) -> dict: ...


def _rates(service: str, weight_kg: float) -> list[tuple[Decimal, str]]:
    w = Decimal(str(round(max(weight_kg, 0.1), 2)))
    return sorted(((base + per_kg * w).quantize(Decimal("0.01")), name)
                  for name, card in RATE_CARDS.items() for svc, (base, per_kg) in card.items() if svc == service)


class SimulatedCarriers(SimulatedSystem):
    system = "carriers"

    async def label(self, key: str, service: str, weight_kg: float, carrier: str | None = None) -> dict:
        async def produce() -> dict:
            rates = [r for r in _rates(service, weight_kg) if carrier is None or r[1] == carrier]
            rate, name = rates[0] if rates else (Decimal("9.99"), carrier or "ups")
            digits = int(hashlib.sha256(key.encode()).hexdigest()[:14], 16) % 10**14
            tracking = f"{name.upper()}{digits:014d}"
            return {"carrier": name, "service": service, "tracking": tracking, "rate": str(rate)}

        return await self._idempotent(f"label:{key}", produce)
