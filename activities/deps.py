"""What activities need at hand: the database and the external systems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from adapters.carriers import SimulatedCarriers
from adapters.notifications import SimulatedNotifier
from adapters.payments import SimulatedPaymentGateway
from temporalio.client import Client

from nodal.db import Database
from nodal.settings import Settings


@dataclass
class Deps:
    db: Database
    payments: SimulatedPaymentGateway
    carriers: SimulatedCarriers
    notifier: SimulatedNotifier
    routing_budget_ms: Optional[float] = None
    temporal: Optional[Client] = None  # starts the orders an order makes (an exchange's replacement)
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def build(cls, db: Database, settings: Settings, temporal: Optional[Client] = None) -> "Deps":
        common = dict(latency_ms=settings.adapter_latency_ms, failure_rate=settings.adapter_failure_rate,
                      timeout_rate=settings.adapter_timeout_rate, timeout_ms=settings.adapter_timeout_ms)
        return cls(
            db=db,
            payments=SimulatedPaymentGateway(db, decline_rate=settings.payment_decline_rate,
                                              authorization_validity=settings.authorization_validity, **common),
            carriers=SimulatedCarriers(db, **common),
            notifier=SimulatedNotifier(db, **common),
            routing_budget_ms=settings.routing_budget_ms,
            temporal=temporal,
            settings=settings,
        )
