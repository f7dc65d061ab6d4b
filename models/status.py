"""Status names of the public contract (API.md) and the order in which fulfillments move."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    received = "received"
    awaiting_approval = "awaiting_approval"  # a B2B order waiting for the buyer's approver, its stock reserved
    awaiting_release = "awaiting_release"
    released = "released"
    ready_for_pickup = "ready_for_pickup"  # every open fulfillment waits for the customer at a store
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
    # Store flows: a pickup waits at the counter, then is collected (delivered) or expires (a no-show).
    ready_for_pickup = "ready_for_pickup"
    collected = "collected"
    expired = "expired"
    # A transfer leg moves stock to the pickup store.
    in_transit = "in_transit"
    received_at_store = "received_at_store"
    # The carrier lost, damaged or could not deliver the parcel (it came back): the order reships or refunds it.
    exception = "exception"


class FulfillmentKind(StrEnum):
    delivery = "delivery"  # a parcel to the customer's address
    pickup = "pickup"  # pickup or curbside at a store
    transfer = "transfer"  # stock moving to the pickup store


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
    carrier = "carrier"  # a carrier's tracking scans (POST /carriers/{carrier}/events), nothing else


# Each kind's happy path; a milestone may only move one step forward along it.
FULFILLMENT_PATHS = {
    FulfillmentKind.delivery: [FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked,
                               FulfillmentStatus.packed, FulfillmentStatus.shipped, FulfillmentStatus.delivered],
    FulfillmentKind.pickup: [FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked,
                             FulfillmentStatus.ready_for_pickup, FulfillmentStatus.collected],
    FulfillmentKind.transfer: [FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked,
                               FulfillmentStatus.packed, FulfillmentStatus.in_transit,
                               FulfillmentStatus.received_at_store],
}
FULFILLMENT_PATH = FULFILLMENT_PATHS[FulfillmentKind.delivery]
# The status each milestone moves a fulfillment of each kind to.
MILESTONES = {
    FulfillmentKind.delivery: {"accept": FulfillmentStatus.accepted, "pick": FulfillmentStatus.picked,
                               "pack": FulfillmentStatus.packed, "ship": FulfillmentStatus.shipped,
                               "deliver": FulfillmentStatus.delivered, "reject": FulfillmentStatus.rejected},
    FulfillmentKind.pickup: {"accept": FulfillmentStatus.accepted, "pick": FulfillmentStatus.picked,
                             "ready": FulfillmentStatus.ready_for_pickup, "collect": FulfillmentStatus.collected,
                             "reject": FulfillmentStatus.rejected},
    FulfillmentKind.transfer: {"accept": FulfillmentStatus.accepted, "pick": FulfillmentStatus.picked,
                               "pack": FulfillmentStatus.packed, "ship": FulfillmentStatus.in_transit,
                               "receive": FulfillmentStatus.received_at_store, "reject": FulfillmentStatus.rejected},
}
MILESTONE_TARGET = MILESTONES[FulfillmentKind.delivery]
# Milestones that leave the status as it is (a curbside check-in).
NOTICES = {FulfillmentKind.pickup: {"arrived"}}
# A fulfillment in one of these no longer holds stock or work.
FULFILLMENT_FAILED = {FulfillmentStatus.rejected, FulfillmentStatus.timed_out, FulfillmentStatus.cancelled,
                      FulfillmentStatus.exception,
                      FulfillmentStatus.expired}
# In the customer's hands.
FULFILLMENT_DELIVERED = {FulfillmentStatus.delivered, FulfillmentStatus.collected}
FULFILLMENT_TERMINAL = FULFILLMENT_FAILED | FULFILLMENT_DELIVERED | {FulfillmentStatus.received_at_store}
# Units still in the node's hands: the order may cancel them.
FULFILLMENT_UNSHIPPED = {
    FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked, FulfillmentStatus.packed,
    FulfillmentStatus.ready_for_pickup,
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


def takes_returns(node_type: str, capabilities, method: str = "ship_back") -> bool:
    """A node takes a return: over its counter with the returns capability, shipped back also as a warehouse."""
    return Capability.returns.value in capabilities or (method == "ship_back" and node_type in RETURN_NODE_TYPES)


# Handed over at a store's counter or curb: no parcel to the customer.
COUNTER_METHODS = (DeliveryMethod.pickup, DeliveryMethod.curbside)
# A pickup the customer may already be waiting for (a curbside check-in counts until it is collected).
AWAITING_CUSTOMER = (FulfillmentStatus.released, FulfillmentStatus.accepted, FulfillmentStatus.picked,
                     FulfillmentStatus.ready_for_pickup)
# Node types that send stock to a pickup store that lacks it (a drop-ship vendor ships only to customers).
TRANSFER_NODE_TYPES = {NodeType.dc, NodeType.store, NodeType.threepl, NodeType.distributor}
# Node types that ship anywhere in the country; the others ship only to their service areas.
NATIONAL_NODE_TYPES = {NodeType.dc, NodeType.threepl, NodeType.dropship}
