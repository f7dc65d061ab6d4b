"""Landed cost of a unit from a node (see CostModel for the formula)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from models.status import COUNTER_METHODS, DeliveryMethod
from promise.dates import Quote, quote, transfer_quote
from routing.geo import haversine_km
from routing.model import CostModel, NetworkView, NodeInfo, RouteLine


def distance_km(node: NodeInfo, line: RouteLine) -> float:
    if line.lat is None or line.lon is None:
        return 0.0
    return haversine_km(node.lat, node.lon, line.lat, line.lon)


def unit_cost(node: NodeInfo, line: RouteLine, model: CostModel) -> float:
    # line.method is a DeliveryMethod value; a StrEnum member compares equal to it, so no conversion is needed
    # on this hot path.
    method = line.method
    if method in COUNTER_METHODS:
        if node.node_id == line.pickup_node_id:
            return node.handling_cost
        # A transfer to the pickup store: a unit shipped there at the standard rate, handled at both ends.
        return model.unit_base + model.per_km * distance_km(node, line) + node.handling_cost + model.transfer_handling
    per_km = model.per_km * (model.express_multiplier if method == DeliveryMethod.ship_express else 1.0)
    return model.unit_base + per_km * distance_km(node, line) + node.handling_cost


def is_transfer(node_id: str, line: RouteLine) -> bool:
    return line.pickup_node_id is not None and node_id != line.pickup_node_id and line.method in COUNTER_METHODS


def package_cost(line: RouteLine, model: CostModel) -> float:
    method = line.method
    return 0.0 if method in COUNTER_METHODS else model.package_cost


def quote_line(node: NodeInfo, line: RouteLine, net: NetworkView, at: datetime, requested: Optional[date] = None
               ) -> Optional[Quote]:
    """The date this node can keep for this line's destination and method; a transfer is dated to the pickup
    store's counter (shipped there, then made ready)."""
    if is_transfer(node.node_id, line):
        return transfer_quote(node, net.nodes[line.pickup_node_id], distance_km(node, line), at, net.carriers,
                              net.promise_buffer)
    return quote(node, DeliveryMethod(line.method), distance_km(node, line), at, net.carriers, requested,
                 net.promise_buffer)
