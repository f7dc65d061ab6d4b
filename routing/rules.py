"""Routing rules the business edits (PUT /routing-rules), applied to the network before the engine runs.

They reshape the choice rather than hard-coding it: node priority groups make later groups cost more per
unit (partner stores before DCs for online-to-offline brands, or DCs first; drop-ship vendors last, as
the fallback when owned stock is short), a pick surcharge prices store picking, and a minimum stock
keeps a node type's last units (display stock) out of online orders; partners below their scorecard's
floors are flagged, and unreliable ones cost more per unit.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.status import NodeType
from routing.model import NetworkView
from routing.scorecard import Scorecard


class ReturnRoute(BaseModel):
    """Where a shipped-back return goes."""

    model_config = ConfigDict(extra="forbid")
    to: Literal["origin", "nearest", "node"] = Field(
        description="origin: back to the node that shipped it; nearest: the return centre nearest the customer (a "
                    "DC, 3PL or distributor, or a node with the returns capability); node: the node named")
    node_id: Optional[str] = Field(None, max_length=64, description="with to = node")

    @model_validator(mode="after")
    def _node_named(self) -> "ReturnRoute":
        if (self.to == "node") != (self.node_id is not None):
            raise ValueError("node_id goes with to = node, and only with it")
        return self


class RoutingRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority_groups: list[list[NodeType]] = Field(
        default=[], description="node types, most preferred group first; types not listed come after the last")
    priority_step: Decimal = Field(default=Decimal("50"), ge=0, le=100000, max_digits=10, decimal_places=2,
                                   description="cost added per unit for each group further down the list")
    service_area_step: Decimal = Field(
        default=Decimal("10"), ge=0, le=100000, max_digits=10, decimal_places=2,
        description="cost added per unit for each priority rank a store stands below the first in a postal "
                    "code's store mapping (PUT /service-areas); 0 ignores the priorities")
    pick_surcharge: dict[NodeType, Decimal] = Field(
        default={}, description="cost added per unit picked at a node of this type (store picking)")
    min_stock: dict[NodeType, int] = Field(
        default={}, description="a node of this type is offered a SKU only while it holds at least this many")
    handling: dict[Literal["oversized", "hazmat"], list[NodeType]] = Field(
        default={}, description="node types that may ship SKUs of this handling class (none listed: any)")
    partner_penalty: Decimal = Field(
        default=Decimal("0"), ge=0, le=100000, max_digits=10, decimal_places=2,
        description="cost added per unit × (1 − the node's reliability: acceptance × fill × on-time ship rate)")
    scorecard_floors: dict[Literal["acceptance_rate", "fill_rate", "on_time_ship_rate"], float] = Field(
        default={"acceptance_rate": 0.8, "fill_rate": 0.9, "on_time_ship_rate": 0.85},
        description="a node under any of these is flagged for offboarding")
    scorecard_min_fulfillments: int = Field(default=20, ge=1, description="history needed before judging a node")
    return_routes: dict[NodeType, ReturnRoute] = Field(
        default={NodeType.dropship: ReturnRoute(to="nearest")},
        description="where a return shipped back without a node named goes, by the type of node that shipped it; "
                    "types not listed go back to their origin (drop-ship vendors' returns go to a return centre "
                    "unless a rule says otherwise)")

    @field_validator("priority_groups")
    @classmethod
    def _each_type_once(cls, groups: list[list[NodeType]]) -> list[list[NodeType]]:
        seen = [t for g in groups for t in g]
        if len(seen) != len(set(seen)):
            raise ValueError("a node type may appear in one priority group only")
        if any(not g for g in groups):
            raise ValueError("a priority group may not be empty")
        return groups

    @field_validator("pick_surcharge")
    @classmethod
    def _not_negative(cls, v: dict[NodeType, Decimal]) -> dict[NodeType, Decimal]:
        if any(x < 0 for x in v.values()):
            raise ValueError("a pick surcharge may not be negative")
        return v

    @field_validator("min_stock")
    @classmethod
    def _counts(cls, v: dict[NodeType, int]) -> dict[NodeType, int]:
        if any(x < 0 for x in v.values()):
            raise ValueError("a minimum stock may not be negative")
        return v

    def group_of(self, node_type: str) -> int:
        for i, group in enumerate(self.priority_groups):
            if node_type in group:
                return i
        return len(self.priority_groups)


def apply_rules(net: NetworkView, rules: RoutingRules,
                scorecards: Optional[dict[str, Scorecard]] = None) -> NetworkView:
    """The network as the rules shape it: surcharges in each node's handling cost, priority groups and
    partner reliability as a per-unit preference cost, and the minimum stock per node type."""
    surcharge = {str(t): float(v) for t, v in rules.pick_surcharge.items() if v}
    nodes = {node_id: replace(node, handling_cost=node.handling_cost + surcharge[node.type])
             if node.type in surcharge else node for node_id, node in net.nodes.items()} if surcharge else net.nodes
    preference = {node_id: float(rules.priority_step) * rules.group_of(node.type)
                  for node_id, node in net.nodes.items() if rules.priority_groups}
    for node_id, card in (scorecards or {}).items():
        if node_id in net.nodes and rules.partner_penalty and card.fulfillments >= rules.scorecard_min_fulfillments:
            preference[node_id] = preference.get(node_id, 0.0) + float(rules.partner_penalty) * (1 - card.reliability())
    return replace(net, nodes=nodes, preference={k: v for k, v in preference.items() if v},
                   area_step=float(rules.service_area_step),
                   min_stock={str(t): n for t, n in rules.min_stock.items() if n > 0},
                   handling_node_types={c: frozenset(str(t) for t in types)
                                        for c, types in rules.handling.items() if types})
