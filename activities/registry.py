"""All activities of the worker, built around one set of dependencies."""

from __future__ import annotations

from typing import Any, Callable

from activities.carriers import CarrierActivities
from activities.deps import Deps
from activities.events import EventActivities
from activities.inventory import InventoryActivities
from activities.payments import PaymentActivities
from activities.read_model import ReadModelActivities
from activities.routing import RoutingActivities


class NodalActivities:
    def __init__(self, deps: Deps):
        self.deps = deps
        self.inventory = InventoryActivities(deps)
        self.routing = RoutingActivities(deps)
        self.payments = PaymentActivities(deps)
        self.carriers = CarrierActivities(deps)
        self.read_model = ReadModelActivities(deps)
        self.events = EventActivities(deps)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.read_model.capture, self.read_model.record_order, self.read_model.record_fulfillment,
            self.read_model.notify, self.read_model.pickup_hold, self.read_model.start_replacement, self.routing.plan, self.routing.return_destination, self.routing.refresh_bid_prices, self.inventory.reserve, self.inventory.set_reservations, self.inventory.release_claims,
            self.inventory.commit, self.inventory.merge, self.inventory.consume, self.inventory.expire_holds, self.inventory.restock, self.inventory.receive_transfer, self.payments.call, self.payments.credit_check, self.carriers.label,
            self.carriers.return_label,
        ]

    def event_processes(self) -> list[Callable[..., Any]]:
        """The long-running activities of the outbound events (their own task queue)."""
        return [self.events.deliver, self.events.watch]
