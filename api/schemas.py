"""Request bodies of the public contract (API.md) that are not workflow messages."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from models.messages import Address, Customer, OrderLineIn, Policy, UnitOfMeasure
from models.status import Capability, NodeType, Role
from nodal.durations import parse_duration

ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Capacity(Body):
    units_per_day: Optional[int] = Field(default=None, ge=0)
    orders_per_day: Optional[int] = Field(default=None, ge=0)
    units_per_hour: Optional[int] = Field(default=None, ge=0, description="units it picks for online orders in any "
                                                                          "hour (a store's staff between customers)")


class Hours(Body):
    open: str = Field(description="HH:MM local")
    close: str = Field(description="HH:MM local")

    @model_validator(mode="after")
    def _order(self) -> "Hours":
        for v in (self.open, self.close):
            _check_hhmm(v, "opening hours")
        if self.open >= self.close:
            raise ValueError("opening hours must open before they close")
        return self


class Calendar(Body):
    closed_weekdays: list[int] = []
    holidays: list[date] = []
    hours: Optional[Hours] = Field(default=None, description="opening hours: store processing and pickup run inside them")
    same_day_cutoff: Optional[str] = Field(default=None, description="HH:MM local: same-day orders must be ready by then")
    pickup_hold: Optional[str] = Field(default=None, description="how long a ready pickup is held here (e.g. 3d);"
                                       " NODAL_PICKUP_HOLD otherwise")
    waves: list[str] = Field(default=[], max_length=48, description="HH:MM local: orders with policy.release wave are "
                             "released here in the next of these waves, one shipment per ship-to and wave")

    @field_validator("waves")
    @classmethod
    def _waves(cls, v: list[str]) -> list[str]:
        for w in v:
            _check_hhmm(w, "waves")
        if len(set(v)) != len(v):
            raise ValueError("waves must be distinct times")
        return sorted(v)

    @field_validator("pickup_hold")
    @classmethod
    def _hold(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and parse_duration(v) <= timedelta(0):
            raise ValueError("pickup_hold must be a positive duration")
        return v

    @field_validator("same_day_cutoff")
    @classmethod
    def _same_day(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _check_hhmm(v, "same_day_cutoff")

    @field_validator("closed_weekdays")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return v


def _check_tz(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r}")
    return v


def _check_hhmm(v: str, what: str = "cutoff_time") -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
        raise ValueError(f"{what} is HH:MM (24 h)")
    return v


def _check_cutoff(v: str) -> str:
    return _check_hhmm(v)


PackName = Literal["case", "pallet"]
SHIPS_WHOLE = "ships only whole cases (or pallets) of the SKUs that have that pack size"


class PackSizes(Body):
    case: Optional[int] = Field(default=None, ge=2, le=100_000, description="eaches in a case")
    pallet: Optional[int] = Field(default=None, ge=2, le=1_000_000, description="eaches on a pallet")

    @model_validator(mode="after")
    def _whole_cases(self) -> "PackSizes":
        if self.case and self.pallet and self.pallet % self.case:
            raise ValueError(f"a pallet holds whole cases: {self.pallet} is not a multiple of {self.case}")
        return self


class NodeIn(Body):
    name: str = Field(min_length=1, max_length=200)
    type: NodeType
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    postal_code: str = Field(default="", max_length=32)
    capabilities: list[Capability] = [Capability.ship]
    enabled: bool = True
    capacity: Capacity = Capacity()
    handling_cost: Decimal = Field(default=Decimal("0"), ge=0, max_digits=10, decimal_places=2)
    processing_time: str = "2h"
    cutoff_time: str = "15:00"
    timezone: str = "UTC"
    calendar: Calendar = Calendar()
    ships_whole: Optional[PackName] = Field(default=None, description=SHIPS_WHOLE)

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_tz(v)))
    _cut = field_validator("cutoff_time")(classmethod(lambda cls, v: _check_cutoff(v)))

    @field_validator("processing_time")
    @classmethod
    def _processing(cls, v: str) -> str:
        parse_duration(v)
        return v


class NodePatch(Body):
    name: Optional[str] = Field(default=None, min_length=1, max_length=200)
    lat: Optional[float] = Field(default=None, ge=-90, le=90)
    lon: Optional[float] = Field(default=None, ge=-180, le=180)
    postal_code: Optional[str] = Field(default=None, max_length=32)
    capabilities: Optional[list[Capability]] = None
    enabled: Optional[bool] = None
    capacity: Optional[Capacity] = None
    handling_cost: Optional[Decimal] = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    processing_time: Optional[str] = None
    cutoff_time: Optional[str] = None
    timezone: Optional[str] = None
    calendar: Optional[Calendar] = None
    ships_whole: Optional[PackName] = Field(default=None, description=SHIPS_WHOLE + " (null: any number of eaches)")

    _tz = field_validator("timezone")(classmethod(lambda cls, v: v if v is None else _check_tz(v)))
    _cut = field_validator("cutoff_time")(classmethod(lambda cls, v: v if v is None else _check_cutoff(v)))

    @field_validator("processing_time")
    @classmethod
    def _processing(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_duration(v)
        return v


class AreaNode(Body):
    node_id: str
    priority: int = Field(default=1, ge=1, le=1000)


class ServiceAreaIn(Body):
    postal_code: str = Field(min_length=1, max_length=32)
    # Where the postal code is (its centroid), so distances can be priced.
    lat: Optional[float] = Field(default=None, ge=-90, le=90)
    lon: Optional[float] = Field(default=None, ge=-180, le=180)
    nodes: list[AreaNode]


class SkuIn(Body):
    name: str = Field(min_length=1, max_length=200)
    weight_kg: float = Field(default=0.5, ge=0, le=5000)
    oversized: bool = False
    hazmat: bool = False
    digital: bool = False
    ship_alone: bool = False
    preorder_release_date: Optional[date] = None
    allowed_node_types: list[NodeType] = []
    category: Optional[str] = Field(default=None, min_length=1, max_length=64)
    low_stock_threshold: Optional[int] = Field(default=None, ge=0)
    pack_sizes: PackSizes = Field(default_factory=PackSizes, description="lines may be ordered in these units")


class SafetyStockDefaultsIn(Body):
    node_types: dict[NodeType, int] = {}
    categories: dict[str, int] = {}

    @field_validator("node_types", "categories")
    @classmethod
    def _non_negative(cls, v: dict) -> dict:
        if any(q < 0 for q in v.values()):
            raise ValueError("safety stock must not be negative")
        return v


class SupplyIn(Body):
    supply_id: str = Field(min_length=1, max_length=128)
    node_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=0, le=10_000_000)  # 0 cancels the supply
    eta: AwareDatetime


class ProtectedIn(Body):
    node_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    tier: str = Field(min_length=1, max_length=32)
    qty: int = Field(ge=0, le=1_000_000)  # 0 removes the protection


class InspectIn(Body):
    event_id: str = Field(min_length=1, max_length=196)  # the ledger keeps it with ":out" and ":in" (200)
    qty: int = Field(gt=0, le=1_000_000)
    disposition: Literal["sellable", "damaged"]


class FeedIn(Body):
    """A channel's stock feed: availability.changed when its available-to-sell of a SKU crosses a threshold or
    moves by the step."""

    thresholds: list[int] = Field(default=[0], max_length=20, description="units; e.g. [0, 5, 20]: out, low, ...")
    step: Optional[int] = Field(default=None, ge=1, le=1_000_000, description="also publish any move this large")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[int]) -> list[int]:
        if any(t < 0 or t > 1_000_000 for t in v):
            raise ValueError("thresholds are units between 0 and 1,000,000")
        return sorted(set(v))


class ChannelViewIn(Body):
    node_types: list[NodeType] = []
    exclude_nodes: list[str] = []
    buffer_units: int = Field(default=0, ge=0, le=1_000_000)
    buffer_pct: float = Field(default=0.0, ge=0, le=100)
    feed: Optional[FeedIn] = Field(default=None, description="publish availability.changed for this channel")


class WebhookIn(Body):
    url: str = Field(min_length=8, max_length=2048, description="http(s) endpoint that receives the POSTs")
    events: list[str] = Field(min_length=1, max_length=50, description='patterns: "*", "order.*", '
                                                                      '"fulfillment.shipped", ...')
    channel: Optional[str] = Field(default=None, max_length=64, description="only this channel's events")
    node_id: Optional[str] = Field(default=None, max_length=64, description="only this node's events")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(v)
            parts.port  # a port that is not a number raises here
        except ValueError as e:
            raise ValueError(f"not a URL: {e}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the url must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("credentials in the url are not kept secret: the signature authenticates us")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        from events.catalogue import valid_pattern

        wrong = [p for p in v if not valid_pattern(p)]
        if wrong:
            raise ValueError(f"unknown event types or patterns: {', '.join(wrong)} (see the OpenAPI's webhooks)")
        return sorted(set(v))


class RotateIn(Body):
    overlap: str = Field(default="24h", description="how long the previous secret keeps signing too (at most 7d)")

    @field_validator("overlap")
    @classmethod
    def _overlap(cls, v: str) -> str:
        if parse_duration(v) > timedelta(days=7):
            raise ValueError("an overlap of at most 7d")
        return v


class ReplayIn(Body):
    since: AwareDatetime = Field(description="events written since then")
    include_delivered: bool = Field(False, description="also what was delivered (by default what was not: failed "
                                                       "deliveries, and events from before the subscription existed)")


class SnapshotItem(Body):
    sku: str = Field(min_length=1, max_length=64)
    on_hand: int = Field(ge=0)
    safety_stock: Optional[int] = Field(default=None, ge=0)


class SnapshotIn(Body):
    as_of: AwareDatetime
    items: list[SnapshotItem]


class AdjustmentIn(Body):
    event_id: str = Field(min_length=1, max_length=200)
    node_id: str
    sku: str
    delta: int = Field(ge=-1_000_000, le=1_000_000)
    reason: str = Field(min_length=1, max_length=200)


class CartLine(Body):
    """A SKU and quantity in a cart (a checkout hold, a promise quote)."""

    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(gt=0, le=100_000, description="how many of uom")
    uom: UnitOfMeasure = Field(default="each", description="each, or a pack size the SKU declares (case, pallet)")


class HoldCreate(Body):
    channel: str = Field(min_length=1, max_length=64)
    destination: Address
    lines: list[CartLine] = Field(min_length=1, max_length=500)


class OrderCreate(Body):
    external_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=64)
    customer: Customer
    # At most NODAL_MAX_ORDER_LINES (checked by the route, which says so plainly).
    lines: list[OrderLineIn] = Field(min_length=1)
    policy: Optional[Policy] = None
    requested_delivery_date: Optional[date] = None
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    hold_id: Optional[str] = Field(default=None, max_length=64)


class OrderPatch(Body):
    lines: Optional[list[OrderLineIn]] = Field(default=None, min_length=1)
    address: Optional[dict[str, Any]] = None
    policy: Optional[Policy] = None
    requested_delivery_date: Optional[date] = Field(
        default=None, description="B2B: a new delivery date; after release only this and line quantities change")


class ApiKeyIn(Body):
    role: Role
    channel: Optional[str] = Field(default=None, max_length=64)
    node_id: Optional[str] = None
    # A client key of a customer tier (e.g. a B2B key account): it may buy stock protected for that tier.
    tier: Optional[str] = Field(default=None, min_length=1, max_length=32)
    approver: bool = Field(False, description="a client key that may approve or decline its channel's orders "
                                              "awaiting approval")
    carrier: Optional[str] = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                   description="a carrier key: the carrier whose tracking scans it sends")
    label: str = Field(default="", max_length=200)
