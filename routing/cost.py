"""Landed cost of a unit from a node (see CostModel for the formula)."""

from __future__ import annotations

from models.status import DeliveryMethod
from routing.geo import haversine_km
from routing.model import CostModel, NodeInfo, RouteLine


def distance_km(node: NodeInfo, line: RouteLine) -> float:
    if line.lat is None or line.lon is None:
        return 0.0
    return haversine_km(node.lat, node.lon, line.lat, line.lon)


def unit_cost(node: NodeInfo, line: RouteLine, model: CostModel) -> float:
    # line.method is a DeliveryMethod value; a StrEnum member compares equal to it, so no conversion is needed
    # on this hot path.
    method = line.method
    if method in (DeliveryMethod.pickup, DeliveryMethod.curbside):
        return node.handling_cost
    per_km = model.per_km * (model.express_multiplier if method == DeliveryMethod.ship_express else 1.0)
    return model.unit_base + per_km * distance_km(node, line) + node.handling_cost


def package_cost(line: RouteLine, model: CostModel) -> float:
    method = line.method
    return 0.0 if method in (DeliveryMethod.pickup, DeliveryMethod.curbside) else model.package_cost
