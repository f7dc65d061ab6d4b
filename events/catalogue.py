"""The event catalogue: every type a subscription may ask for, what it means, and where it comes from.

An order's events come from the read model's writes (activities/read_model.py): a timeline entry the catalogue
names (``FROM_TIMELINE``) or a change of the order's status (``FROM_STATUS``), so an event is in the outbox exactly
when the change it describes is in the read model (one transaction). Its id, the ``webhook-id`` receivers dedupe
on, is made of the order id and the entry's key (or the order's version), so a retried write makes no second one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Optional

from models.status import FulfillmentStatus, OrderStatus

ORDER = {
    "order.received": "An order was taken (placed, imported or a replacement of an exchange).",
    "order.promised": "The order was promised and its units reserved (data.promised_by).",
    "order.released": "The remorse window ended: work went to the nodes (data.fulfillments).",
    "order.backordered": "Units wait for stock (data.lines with qty; data.expected dates where supply is due).",
    "order.repromised": "A promised date moved (data.old, data.new, data.lines).",
    "order.at_risk": "A fulfillment missed a promise milestone (data.fulfillment_id, data.why).",
    "order.cancelled": "The order was cancelled (data.status cancelled), or some of its lines (data.partial true).",
    "order.rejected": "Nothing can serve the order under its policy (data.reason).",
    "order.ready_for_pickup": "Everything not yet in the customer's hands waits at the store's counter.",
    "order.shipped": "All units shipped (data.status shipped), or the first of several parcels (partially_shipped).",
    "order.delivered": "Every unit was delivered.",
    "order.returned": "Returned units arrived (data.status returned or partially_returned).",
    "order.refunded": "A refund was issued (data.amount, data.return_id or data.fulfillment_id).",
}
# A fulfillment's statuses (models.status.FulfillmentStatus) each as an event, and carrier scans as tracking.
FULFILLMENT = {
    "fulfillment.released": "Work went to a node (data.node_id, data.lines).",
    "fulfillment.accepted": "The node accepted the work.",
    "fulfillment.rejected": "The node rejected the work (data.reason); the order re-sources it.",
    "fulfillment.timed_out": "The node did not accept in time; the order re-sources the work.",
    "fulfillment.picked": "Picked (data.reason 'short pick' when less was found; data.unsourced).",
    "fulfillment.packed": "Packed.",
    "fulfillment.shipped": "Shipped (data.carrier, data.tracking).",
    "fulfillment.delivered": "Delivered (by the node's word or a carrier's scan).",
    "fulfillment.cancelled": "Cancelled before it shipped (data.reason).",
    "fulfillment.ready_for_pickup": "A pickup is ready at the store's counter.",
    "fulfillment.collected": "The customer collected the pickup.",
    "fulfillment.expired": "A pickup was not collected in time: its units went back on the shelf.",
    "fulfillment.in_transit": "A transfer left for the pickup store.",
    "fulfillment.received_at_store": "A transfer arrived at the pickup store.",
    "fulfillment.exception": "The carrier reported the parcel lost, damaged, refused or returned to sender (data.reason); "
                             "the order reships or refunds it by its policy.",
    "fulfillment.tracking": "A carrier scan (data.event: in_transit, out_for_delivery, delivered, exception, "
                            "returned_to_sender; data.at, data.carrier, data.tracking).",
}
RETURN = {
    "return.requested": "A return was opened (data.return_id, data.node_id, data.lines).",
    "return.received": "Returned units arrived at the node (data.return_id, data.lines).",
}
AVAILABILITY = {
    "availability.changed": "A channel's available-to-sell of a SKU crossed one of the channel's thresholds or moved "
                            "by its step (data.channel, data.sku, data.available, data.previous).",
}
TYPES: dict[str, str] = {**ORDER, **FULFILLMENT, **RETURN, **AVAILABILITY}
GROUPS = sorted({t.split(".")[0] for t in TYPES})

FROM_TIMELINE: dict[str, str] = {
    "order_received": "order.received",
    "released": "order.released",
    "backordered": "order.backordered",
    "repromised": "order.repromised",
    "at_risk": "order.at_risk",
    "rejected": "order.rejected",
    "lines_cancelled": "order.cancelled",
    "refunded": "order.refunded",
    "return_requested": "return.requested",
    "return_received": "return.received",
    "fulfillment_released": "fulfillment.released",
    "carrier_scan": "fulfillment.tracking",
    **{f"fulfillment_{s.value}": f"fulfillment.{s.value}" for s in FulfillmentStatus
       if f"fulfillment.{s.value}" in FULFILLMENT},
}
# Entering these statuses: order.promised only from received (a placed order's first promise).
FROM_STATUS: dict[OrderStatus, str] = {
    OrderStatus.awaiting_release: "order.promised", OrderStatus.awaiting_approval: "order.promised",
    OrderStatus.cancelled: "order.cancelled", OrderStatus.ready_for_pickup: "order.ready_for_pickup",
    OrderStatus.partially_shipped: "order.shipped", OrderStatus.shipped: "order.shipped",
    OrderStatus.delivered: "order.delivered", OrderStatus.partially_returned: "order.returned",
    OrderStatus.returned: "order.returned",
}


def valid_pattern(pattern: str) -> bool:
    """``*``, a group (``order.*``) or one type of the catalogue."""
    return pattern == "*" or pattern in TYPES or (pattern.endswith(".*") and pattern[:-2] in GROUPS)


def matches(pattern: str, event_type: str) -> bool:
    return pattern in ("*", event_type) or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))


# The same rule in SQL, for a subscription row ``w`` and an event row ``ev`` (channel and node scopes included).
MATCH_SQL = ("(w.channel IS NULL OR w.channel = ev.channel) AND (w.node_id IS NULL OR w.node_id = ev.node_id)"
             " AND (ev.type = ANY(w.events) OR split_part(ev.type, '.', 1) || '.*' = ANY(w.events)"
             " OR '*' = ANY(w.events))")


@dataclass
class NewEvent:
    """An event to write: ``stream`` orders delivery (an order id, or a channel's SKU)."""

    id: str
    type: str
    stream: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    order_id: Optional[str] = None
    channel: Optional[str] = None
    node_id: Optional[str] = None


def from_timeline(order_id: str, entries: Iterable[Any]) -> list[NewEvent]:
    """The events of an order's new timeline entries (``key``, ``at``, ``event``, ``detail``)."""
    out = []
    for e in entries:
        kind = FROM_TIMELINE.get(e.event)
        if kind is None:
            continue
        detail = dict(e.detail or {})
        if e.event == "lines_cancelled":
            detail["partial"] = True
        out.append(NewEvent(id=f"{order_id}.{e.key}", type=kind, stream=order_id, at=e.at, data=detail,
                            order_id=order_id, node_id=detail.get("node_id") if kind.split(".")[0] != "order" else None))
    return out


def from_status(order_id: str, version: int, before: Optional[str], after: OrderStatus, at: datetime,
                again: Optional[int] = None, **detail: Any) -> list[NewEvent]:
    """The event of an order entering a status, if the catalogue has one for it; ``again``: the version was
    written before by a discarded attempt (read_model), so this event needs an id of its own."""
    if before == after.value:
        return []
    kind = FROM_STATUS.get(after)
    if kind is None or (kind == "order.promised" and before not in (None, OrderStatus.received.value)):
        return []
    data = {"status": after.value, "previous_status": before, **{k: v for k, v in detail.items() if v is not None}}
    suffix = f"@{again}" if again is not None else ""
    return [NewEvent(id=f"{order_id}.v{version}{suffix}", type=kind, stream=order_id, at=at, data=data,
                     order_id=order_id)]
