"""Plain data the engine works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Optional

from models.nodes import NodeInfo  # noqa: F401  (the engine's node; routing.NodeInfo as before)
from promise.carriers import DEFAULT_CALENDAR, CarrierCalendar


@dataclass(frozen=True)
class CostModel:
    """Landed cost of serving units from a node (defaults: the published benchmark's parameters).

    cost(plan) = Σ_nodes used package_cost
               + Σ_units (unit_base + per_km × distance(node, destination) + handling_cost(node))
               + unfilled_penalty × units left unfilled (+ unfilled_order_fee once, if any)
    Express shipping multiplies the distance term; pickup and curbside carry no parcel cost, unless the units
    come from another node (a transfer to the pickup store: the standard distance term plus transfer_handling).
    """

    package_cost: float = 8.759
    unit_base: float = 0.423
    per_km: float = 0.000541 / 1.609344
    express_multiplier: float = 2.5
    unfilled_penalty: float = 1000.0
    unfilled_order_fee: float = 0.0  # once per delivery group with anything unfilled (a lost sale's fixed cost)
    same_day_radius_km: float = 50.0
    late_per_unit_day: float = 15.0  # a unit delivered a day after its promise costs this much more
    # A unit sent to a pickup store that lacks it (ship to store): received and put away there as well.
    transfer_handling: float = 1.0


@dataclass(frozen=True)
class RouteLine:
    line_id: str
    sku: str
    qty: int
    method: str
    postal_code: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    pickup_node_id: Optional[str] = None
    exclude_nodes: frozenset[str] = frozenset()
    # The date this line must arrive by (its promise on a reroute, a B2B requested date): a node that
    # would deliver later pays CostModel.late_per_unit_day for each day late.
    due: Optional[date] = None
    pack: int = 1  # every node gets whole packs of this many eaches (a line ordered by the case)
    complete: bool = False  # one node ships all of it or none does (policy.backorder ship_complete_only)


@dataclass(frozen=True)
class SkuRules:
    allowed_node_types: frozenset[str] = frozenset()  # empty = any
    preorder_release: Optional[date] = None  # sold before this day, shipped from it
    handling: frozenset[str] = frozenset()  # oversized, hazmat, ship_alone
    digital: bool = False  # delivered by the order itself (a code, a download): needs no node and no stock
    packs: tuple[tuple[str, int], ...] = ()  # its pack sizes: (("case", 12), ("pallet", 480))

    def pack(self, uom: Optional[str]) -> int:
        return dict(self.packs).get(uom or "", 1)


@dataclass
class NetworkView:
    """The part of the network a request can touch, read at one instant."""

    nodes: dict[str, NodeInfo]
    # postal code → {node_id: priority} (the store mapping; 1 first)
    service_areas: dict[str, dict[str, int]] = field(default_factory=dict)
    # Cost added per unit for each rank a node stands below the first in a destination's store mapping
    # (routing rules' service_area_step): the first store serves when it can, the next when it cannot.
    area_step: float = 10.0
    # (node_id, sku) → available-to-sell
    available: dict[tuple[str, str], int] = field(default_factory=dict)
    skus: dict[str, SkuRules] = field(default_factory=dict)
    incoming: set[str] = field(default_factory=set)  # SKUs with supply on the way (backorders can be dated)
    # node_id → why the order's channel may not sell from it
    channel_excluded: dict[str, str] = field(default_factory=dict)
    # (node_id, sku) → what taking one more unit there is expected to cost later orders (a bid price from
    # the demand forecast, routing/bidprice.py); empty = choose on today's landed cost alone.
    opportunity: dict[tuple[str, str], float] = field(default_factory=dict)
    # node_id → cost added per unit by the node priority groups of the routing rules
    preference: dict[str, float] = field(default_factory=dict)
    # node type → units of a SKU a node of that type must hold to be offered it (routing rules)
    min_stock: dict[str, int] = field(default_factory=dict)
    # handling class (oversized, hazmat) → the node types that may ship it (routing rules)
    handling_node_types: dict[str, frozenset[str]] = field(default_factory=dict)
    carriers: CarrierCalendar = DEFAULT_CALENDAR  # carrier holidays and closures, for dates
    promise_buffer: str = "none"  # delivery days a promise adds against delays (promise.dates.BUFFER_POLICIES)
    # What the network was read from (an object that lives as long as that read is current) and for which channel:
    # the quote engine's per-destination tables are kept per both (routing/fast.py). None: not kept.
    epoch: Optional[object] = None
    channel: Optional[str] = None


@dataclass(frozen=True)
class RouteRequest:
    lines: tuple[RouteLine, ...]
    ship_complete: bool = False
    fill_or_kill: bool = False
    min_fill_rate: float = 0.0
    max_splits: int = 2
    exclude_nodes: frozenset[str] = frozenset()
    to_node: Optional[str] = None
    at: Optional[datetime] = None
    # Stop searching node sets after this long and keep the best found (None: search them all).
    budget_ms: Optional[float] = None
    per_line: bool = False  # each line planned on its own (no package sharing)


@dataclass(frozen=True)
class Assignment:
    node_id: str
    line_id: str
    sku: str
    qty: int


@dataclass(frozen=True)
class NodeVerdict:
    node_id: str
    outcome: str  # chosen | lost | ineligible
    reason: str
    cost: Optional[float] = None


@dataclass
class RouteResult:
    feasible: bool
    reason: str
    assignments: list[Assignment]
    unfilled: dict[str, int]  # line_id → units
    cost: float
    verdicts: list[NodeVerdict]
    distance_km: dict[str, float] = field(default_factory=dict)  # node → km to its destination
    exact: bool = True  # every candidate node set was priced (False: the budget ran out first)
    # The chosen plan's cost as the search weighs it (lost units and the future priced in), and a bound
    # no plan can beat in the same terms: how far from optimal a budget-limited answer can be.
    lower_bound: float = 0.0
    search_cost: float = 0.0
    # What the chosen units are expected to cost later orders (bid prices from the demand forecast).
    future_cost: float = 0.0
    digital: dict[str, int] = field(default_factory=dict)  # line_id → units of digital lines: no node needed
