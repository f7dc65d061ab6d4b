"""carriers.*: outbound and return labels."""

from __future__ import annotations

from decimal import Decimal

from temporalio import activity

from activities.deps import Deps
from models.messages import Label, ReturnLabelRequest, ShipmentRequest
from models.status import DeliveryMethod


class CarrierActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="carriers.label")
    async def label(self, req: ShipmentRequest) -> Label:
        if req.tracking:
            # The partner bought its own label: record it as given.
            return Label(carrier=req.carrier or "partner", service="partner", tracking=req.tracking, rate=Decimal("0"))
        service = "express" if req.method in (DeliveryMethod.ship_express, DeliveryMethod.same_day) else "ground"
        resp = await self.deps.carriers.label(req.fulfillment_id, service, req.weight_kg or 0.5 * req.units, req.carrier)
        return Label(carrier=resp["carrier"], service=resp["service"], tracking=resp["tracking"], rate=Decimal(resp["rate"]))

    @activity.defn(name="carriers.return_label")
    async def return_label(self, req: ReturnLabelRequest) -> Label:
        resp = await self.deps.carriers.label(req.return_id, "ground", 0.5 * req.units)
        return Label(carrier=resp["carrier"], service=resp["service"], tracking=resp["tracking"], rate=Decimal(resp["rate"]))
