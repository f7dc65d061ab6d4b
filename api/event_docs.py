"""The event catalogue in the OpenAPI's ``webhooks`` section: each type with its body's JSON schema and an example,
so receivers can generate their handlers. The bodies are what events/delivery.py sends: ``{type, timestamp, data}``.
Each ``data`` schema names what the type carries and allows more (a new field is not a breaking change).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.answers import Timestamp
from events.catalogue import TYPES

_SIGNING = ("\n\nSent as a POST signed per the Standard Webhooks specification: `webhook-id` (the same on every "
            "attempt: dedupe on it), `webhook-timestamp` (this attempt, Unix seconds), `webhook-signature` "
            "(`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<body>` under the subscription's "
            "`whsec_` secret; during a rotation two, space-separated). Answer 2xx within NODAL_WEBHOOK_TIMEOUT; anything "
            "else is retried with backoff. Events of one order arrive in order; no personal data is in them.")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # a field added later is not a breaking change


class OrderRef(_Open):
    order_id: str
    external_id: Optional[str] = Field(description="the client's own id for the order")
    channel: Optional[str]


class StatusChange(OrderRef):
    status: str = Field(description="the order's status now")
    previous_status: Optional[str]
    promised_by: Optional[Timestamp] = None
    reason: Optional[str] = None


class FulfillmentRef(OrderRef):
    fulfillment_id: str
    node_id: str
    status: Optional[str] = Field(None, description="the fulfillment's status now")
    reason: Optional[str] = None


_FIELDS: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "order.received": (OrderRef, {"lines": (int, Field(description="number of lines"))}),
    "order.released": (OrderRef, {"fulfillments": (list[str], Field(description="fulfillments started"))}),
    "order.backordered": (OrderRef, {"lines": (list[Any], Field(description="lines waiting, with their open qty")),
                                     "why": (Optional[str], None), "expected": (Optional[dict[str, str]], None)}),
    "order.repromised": (OrderRef, {"lines": (list[str], ...), "old": (Optional[Timestamp], ...),
                                    "new": (Timestamp, ...), "reason": (str, ...)}),
    "order.at_risk": (OrderRef, {"fulfillment_id": (str, ...), "node_id": (str, ...), "why": (str, ...),
                                 "promised_by": (Optional[Timestamp], None)}),
    "order.rejected": (OrderRef, {"reason": (str, ...)}),
    "order.cancelled": (OrderRef, {"status": (Optional[str], None), "partial": (Optional[bool], None),
                                   "reason": (Optional[str], None), "lines": (Optional[list[Any]], None)}),
    "order.refunded": (OrderRef, {"amount": (str, Field(description="decimal, the order's currency")),
                                  "return_id": (Optional[str], None), "fulfillment_id": (Optional[str], None)}),
    "return.requested": (OrderRef, {"return_id": (str, ...), "node_id": (Optional[str], None), "reason": (str, ...),
                                    "lines": (list[Any], ...)}),
    "return.received": (OrderRef, {"return_id": (str, ...), "lines": (list[Any], ...)}),
    "fulfillment.released": (FulfillmentRef, {"lines": (list[Any], Field(description="[{line_id, sku, qty}]"))}),
    "fulfillment.shipped": (FulfillmentRef, {"carrier": (Optional[str], None), "tracking": (Optional[str], None)}),
    "fulfillment.tracking": (FulfillmentRef, {
        "carrier": (str, ...), "tracking": (str, ...),
        "event": (Literal["in_transit", "out_for_delivery", "delivered", "exception", "returned_to_sender"], ...),
        "at": (Timestamp, ...), "detail": (Optional[dict[str, Any]], None)}),
    "availability.changed": (_Open, {
        "channel": (str, ...), "sku": (str, ...),
        "available": (int, Field(description="the channel's available-to-sell now (its view and buffer applied)")),
        "previous": (Optional[int], Field(description="what the feed published before (null: the first figure)")),
        "thresholds": (list[int], ...)}),
}
_STATUS = {"order.promised", "order.ready_for_pickup", "order.shipped", "order.delivered", "order.returned"}

_ORDER = {"order_id": "ORD-7K3M9Q2XR4TBW8PL", "external_id": "A-1001", "channel": "web"}
_F = {**_ORDER, "fulfillment_id": "ORD-7K3M9Q2XR4TBW8PL-F1", "node_id": "DC-EAST"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "order.received": {**_ORDER, "lines": 2},
    "order.promised": {**_ORDER, "status": "awaiting_release", "previous_status": "received",
                       "promised_by": "2026-12-09T23:59:00+00:00"},
    "order.released": {**_ORDER, "fulfillments": ["ORD-7K3M9Q2XR4TBW8PL-F1"], "held_until": {}},
    "order.backordered": {**_ORDER, "lines": [{"line_id": "L2", "qty": 1}], "why": "not enough stock in eligible nodes",
                          "expected": {"L2": "2026-12-14T23:59:00+00:00"}},
    "order.repromised": {**_ORDER, "lines": ["L2"], "line_count": 1, "reason": "incoming supply",
                         "old": "2026-12-09T23:59:00+00:00", "new": "2026-12-14T23:59:00+00:00"},
    "order.at_risk": {**_ORDER, "fulfillment_id": "ORD-7K3M9Q2XR4TBW8PL-F1", "node_id": "DC-EAST",
                      "why": "not shipped by its ship-by 2026-12-07T22:00:00+00:00",
                      "promised_by": "2026-12-09T23:59:00+00:00"},
    "order.cancelled": {**_ORDER, "status": "cancelled", "previous_status": "awaiting_release",
                        "reason": "customer called"},
    "order.rejected": {**_ORDER, "reason": "no node can serve L1"},
    "order.ready_for_pickup": {**_ORDER, "status": "ready_for_pickup", "previous_status": "released"},
    "order.shipped": {**_ORDER, "status": "shipped", "previous_status": "released",
                      "promised_by": "2026-12-09T23:59:00+00:00"},
    "order.delivered": {**_ORDER, "status": "delivered", "previous_status": "shipped"},
    "order.returned": {**_ORDER, "status": "partially_returned", "previous_status": "delivered"},
    "order.refunded": {**_ORDER, "return_id": "ORD-7K3M9Q2XR4TBW8PL-R1", "amount": "19.90"},
    "fulfillment.released": {**_F, "lines": [{"line_id": "L1", "sku": "SKU-TEE-1", "qty": 2}]},
    "fulfillment.shipped": {**_F, "status": "shipped", "carrier": "ups", "tracking": "UPS00012345678901"},
    "fulfillment.rejected": {**_F, "status": "rejected", "reason": "out of stock",
                             "unsourced": [{"line_id": "L1", "sku": "SKU-TEE-1", "qty": 2}]},
    "fulfillment.exception": {**_F, "status": "exception", "reason": "lost: the carrier lost the parcel"},
    "fulfillment.tracking": {**_F, "carrier": "ups", "tracking": "UPS00012345678901", "event": "out_for_delivery",
                             "at": "2026-12-09T08:12:00+00:00", "detail": {"location": "Newark, NJ"}},
    "return.requested": {**_ORDER, "return_id": "ORD-7K3M9Q2XR4TBW8PL-R1", "node_id": "DC-EAST",
                         "reason": "too small", "lines": [{"line_id": "L1", "qty": 1}]},
    "return.received": {**_ORDER, "return_id": "ORD-7K3M9Q2XR4TBW8PL-R1",
                        "lines": [{"line_id": "L1", "qty": 1, "received_qty": 1, "disposition": "sellable"}]},
    "availability.changed": {"channel": "marketplace", "sku": "SKU-TEE-1", "available": 4, "previous": 12,
                             "thresholds": [0, 5, 20]},
}


def _name(event_type: str) -> str:
    return "".join(p.capitalize() for p in event_type.replace("_", ".").split(".")) + "Event"


def data_model(event_type: str) -> type[BaseModel]:
    default = (StatusChange if event_type in _STATUS else FulfillmentRef if event_type.startswith("fulfillment.")
               else OrderRef)
    base, fields = _FIELDS.get(event_type, (default, {}))
    return create_model(_name(event_type)[:-5] + "Data", __base__=base, **fields)


def envelope(event_type: str) -> type[BaseModel]:
    """The body of one event type: {type, timestamp, data}."""
    default = {**_F, "status": event_type.split(".")[1]} if event_type.startswith("fulfillment.") else _ORDER
    example = {"type": event_type, "timestamp": "2026-12-07T14:03:11.402Z", "data": EXAMPLES.get(event_type, default)}
    return create_model(_name(event_type), __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
                        type=(Literal[event_type], ...),  # type: ignore[valid-type]
                        timestamp=(Timestamp, Field(description="when it happened (UTC)")),
                        data=(data_model(event_type), ...))


ENVELOPES = {t: envelope(t) for t in TYPES}


def add_event_docs(app: FastAPI) -> None:
    """One entry per event type in the OpenAPI's webhooks (what a subscriber's endpoint receives)."""
    for event_type, description in TYPES.items():
        model = ENVELOPES[event_type]

        async def receive(body) -> None:  # documentation only: what the subscriber's endpoint receives
            return None

        receive.__name__ = _name(event_type)
        receive.__annotations__ = {"body": model, "return": None}
        app.webhooks.post(event_type, summary=event_type, description=description + _SIGNING,
                          tags=["events"], status_code=200, operation_id=f"event_{event_type.replace('.', '_')}",
                          responses={200: {"description": "Received (any 2xx): not sent again"}})(receive)


def tidy(schema: dict[str, Any]) -> dict[str, Any]:
    """A subscriber's endpoint answers 2xx or is retried: FastAPI's generated 422 does not apply there."""
    for ops in schema.get("webhooks", {}).values():
        for op in ops.values():
            op["responses"].pop("422", None)
    return schema
