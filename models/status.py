"""Status names of the public contract (API.md) and the order in which fulfillments move."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    received = "received"
    awaiting_release = "awaiting_release"
    released = "released"
    partially_shipped = "partially_shipped"
    shipped = "shipped"
    delivered = "delivered"
    partially_returned = "partially_returned"
    returned = "returned"
    backordered = "backordered"
    cancelled = "cancelled"
    rejected = "rejected"


class FulfillmentStatus(StrEnum):
    released = "released"
    accepted = "accepted"
    picked = "picked"
    packed = "packed"
    shipped = "shipped"
    delivered = "delivered"
    rejected = "rejected"
    timed_out = "timed_out"
    cancelled = "cancelled"


class ReturnStatus(StrEnum):
    requested = "requested"
    received = "received"
    refunded = "refunded"


class DeliveryMethod(StrEnum):
    ship_standard = "ship_standard"
    ship_express = "ship_express"
    same_day = "same_day"
    pickup = "pickup"
    curbside = "curbside"


class NodeType(StrEnum):
    dc = "dc"
    store = "store"
    distributor = "distributor"
    retailer = "retailer"
    dropship = "dropship"
    threepl = "3pl"


class Capability(StrEnum):
    ship = "ship"
    pickup = "pickup"
    curbside = "curbside"
    same_day = "same_day"
    returns = "returns"  # takes returns over the counter (in store), and shipped back to it


class Role(StrEnum):
    admin = "admin"
    support = "support"
    client = "client"
    partner = "partner"


# The partner's happy path; a milestone may only move one step forward.
FULFILLMENT_PATH = [
    FulfillmentStatus.released,
    FulfillmentStatus.accepted,
    FulfillmentStatus.picked,
    FulfillmentStatus.packed,
    FulfillmentStatus.shipped,
    FulfillmentStatus.delivered,
]
MILESTONE_TARGET = {
    "accept": FulfillmentStatus.accepted,
    "pick": FulfillmentStatus.picked,
    "pack": FulfillmentStatus.packed,
    "ship": FulfillmentStatus.shipped,
    "deliver": FulfillmentStatus.delivered,
    "reject": FulfillmentStatus.rejected,
}
# A fulfillment in one of these no longer holds stock or work.
FULFILLMENT_FAILED = {FulfillmentStatus.rejected, FulfillmentStatus.timed_out, FulfillmentStatus.cancelled}
FULFILLMENT_TERMINAL = FULFILLMENT_FAILED | {FulfillmentStatus.delivered}
FULFILLMENT_UNSHIPPED = {
    FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked, FulfillmentStatus.packed,
}

# Which capability a delivery method needs at the serving node.
METHOD_CAPABILITY = {
    DeliveryMethod.ship_standard: Capability.ship,
    DeliveryMethod.ship_express: Capability.ship,
    DeliveryMethod.same_day: Capability.same_day,
    DeliveryMethod.pickup: Capability.pickup,
    DeliveryMethod.curbside: Capability.curbside,
}
# Node types that receive returns shipped back to them without saying so (warehouses); others need ``returns``.
RETURN_NODE_TYPES = {NodeType.dc, NodeType.threepl, NodeType.distributor}
# Node types that ship anywhere in the country; the others ship only to their service areas.
NATIONAL_NODE_TYPES = {NodeType.dc, NodeType.threepl, NodeType.dropship}
