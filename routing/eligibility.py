"""Which nodes may serve a line, and if not, why not (the first failed rule is the reason)."""

from __future__ import annotations

import math
from typing import Optional

from models.status import (
    COUNTER_METHODS, METHOD_CAPABILITY, NATIONAL_NODE_TYPES, TRANSFER_NODE_TYPES, Capability, DeliveryMethod,
)
from promise.dates import quote
from routing.geo import haversine_km
from routing.model import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest


def place_reason(node: NodeInfo, line: RouteLine, req: RouteRequest, net: NetworkView, cost: CostModel) -> Optional[str]:
    """The rules that depend on the node and on where and how its parcel goes: the same for every line of a
    delivery group, so the engine asks once per node and group."""
    if req.to_node and node.node_id != req.to_node:
        return f"support asked for {req.to_node}"
    if node.node_id in req.exclude_nodes:
        return "excluded: failed or was excluded for this order"
    why = static_place_reason(node, line, net, cost)
    if why is not None:
        return why
    if line.method == DeliveryMethod.same_day and not same_day_open(node, req, net):
        return f"past today's same-day cutoff ({node.same_day_cutoff} local)"
    return capacity_reason(node)


def static_place_reason(node: NodeInfo, line: RouteLine, net: NetworkView, cost: CostModel) -> Optional[str]:
    """The part of place_reason that holds for every request to this destination by this method and channel,
    whatever the time and the order (routing/fast.py keeps its answer per destination)."""
    method = line.method  # compares equal to its DeliveryMethod member (a StrEnum), unconverted on this hot path
    if not node.enabled:
        return "disabled"
    if node.node_id in net.channel_excluded:
        return net.channel_excluded[node.node_id]
    if method in COUNTER_METHODS:
        if node.node_id == line.pickup_node_id:
            if METHOD_CAPABILITY[method] not in node.capabilities:
                return f"cannot do {method}"
        elif node.type not in TRANSFER_NODE_TYPES or Capability.ship not in node.capabilities:
            return "not the pickup node"
        elif line.pickup_node_id not in net.nodes:
            return "the pickup node is not in the network"
        # else a transfer source: it ships the units to the pickup store (ship to store)
    elif METHOD_CAPABILITY[method] not in node.capabilities:
        return f"cannot do {method}"
    elif method == DeliveryMethod.same_day:
        if line.lat is None or line.lon is None:
            return "destination unknown"
        if haversine_km(node.lat, node.lon, line.lat, line.lon) > cost.same_day_radius_km:
            return f"beyond the {cost.same_day_radius_km:.0f} km same-day radius"
    elif node.type not in NATIONAL_NODE_TYPES and node.node_id not in net.service_areas.get(line.postal_code or "", {}):
        return f"does not serve {line.postal_code}"
    return None


def same_day_open(node: NodeInfo, req: RouteRequest, net: NetworkView) -> bool:
    """Whether a same-day order can still be ready today at this node (no time given: yes)."""
    return req.at is None or quote(node, DeliveryMethod.same_day, 0.0, req.at, net.carriers) is not None


def capacity_reason(node: NodeInfo) -> Optional[str]:
    if node.remaining_units is not None and node.remaining_units <= 0:
        return "at unit capacity (per day or per hour)"
    if node.remaining_orders is not None and node.remaining_orders <= 0:
        return "at daily order capacity"
    return None


def line_reason(node: NodeInfo, line: RouteLine, net: NetworkView) -> Optional[str]:
    """The rules that depend on the line: its exclusions, its SKU's rules and the node's stock of it."""
    if node.node_id in line.exclude_nodes:
        return "excluded: failed or was excluded for this order"
    rules = net.skus.get(line.sku)
    if rules and rules.allowed_node_types and node.type not in rules.allowed_node_types:
        return f"{line.sku} not allowed from a {node.type}"
    for handling in sorted(rules.handling if rules else ()):
        allowed = net.handling_node_types.get(handling)
        if allowed and node.type not in allowed:
            return f"{handling} items ship only from {', '.join(sorted(allowed))}"
    have = net.available.get((node.node_id, line.sku), 0)
    if have <= 0:
        return f"no stock of {line.sku}"
    if have < net.min_stock.get(node.type, 0):
        return f"holds {have} of {line.sku}, below the minimum of {net.min_stock[node.type]} for a {node.type}"
    step = whole_step(node, line, net)
    if step > 1 and (have < step or line.qty < step):
        why = ("the line ships complete only" if line.complete and step == line.qty
               else f"ships whole {node.ships_whole}s only" if step != line.pack else "the line is ordered in whole packs")
        return f"{why}: {step} units of {line.sku} at a time, {'it holds' if have < step else 'the line needs'} " \
               f"{min(have, line.qty)}"
    return None


def whole_step(node: NodeInfo, line: RouteLine, net: NetworkView) -> int:
    """How many eaches of the line this node ships at a time: the line's own pack (ordered by the case) and the
    pack the node ships only whole ones of (both, if both)."""
    step = line.pack
    if node.ships_whole and (rules := net.skus.get(line.sku)) is not None:
        step = math.lcm(step, rules.pack(node.ships_whole))
    return math.lcm(step, line.qty) if line.complete else step


def ineligible_reason(
    node: NodeInfo, line: RouteLine, req: RouteRequest, net: NetworkView, cost: CostModel
) -> Optional[str]:
    """Why this node may not serve this line (None: it may); the first failed rule is the reason."""
    return place_reason(node, line, req, net, cost) or line_reason(node, line, net)
