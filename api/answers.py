"""What each route answers, as its OpenAPI documents it (the request bodies are in api/schemas.py).

Every route declares one of these as its response model, so clients can generate typed SDKs. A model names
every field its answer has and forbids any other: FastAPI checks each answer against its model, so an answer
that drifts from its documentation fails loudly in the tests (and schemathesis checks answers against the
schemas in tests/integration/test_fuzz.py). Times, dates and money keep the form the API has always written
(ISO 8601 strings, decimal strings); the schema says which they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from models.messages import Delivery, Label, Plan, Policy, ReturnLineState, SupplyClaimLine
from routing.rules import RoutingRules
from models.status import (
    Capability, DeliveryMethod, FulfillmentKind, FulfillmentStatus, NodeType, OrderStatus, ReturnStatus, Role,
)

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Day = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]
Money = Annotated[str, WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$",
                                        "description": "a decimal amount in the order's currency", "example": "19.90"})]
Rate = Annotated[Optional[float], Field(ge=0, le=1, description="a share between 0 and 1; null without data")]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors
class Problem(Answer):
    """Every refusal: what is wrong, in words (FastAPI's own validation lists the fields instead)."""

    detail: Union[str, list[dict[str, Any]]] = Field(
        description="the reason, or for a body that does not match its schema one entry per wrong field")


_WHY = {400: "The request cannot be read (a malformed body or Idempotency-Key).",
        401: "No key, or an unknown or revoked one (`Authorization: Bearer <key>`).",
        403: "This key's role, channel or node may not do this; nothing changed.",
        404: "No such resource.",
        409: "Not now: the resource's state does not allow it (the reason says why); nothing changed.",
        413: "The body is over NODAL_MAX_BODY_BYTES.",
        422: "The input is invalid (the reason says which part); nothing changed.",
        415: "The body is in a format this route does not take (its Content-Type).",
        429: "Over the rate limit; `Retry-After` says when to try again.",
        503: "A dependency (PostgreSQL or Temporal) is unavailable; try again shortly."}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents, each with the one Problem schema."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}


# Every route may answer these (the request guard, authentication).
COMMON = errors(401, 429)
# Public routes: no key wanted. The guard's 429 is JSON whatever the route answers (/metrics: text).
PUBLIC = {429: {"description": _WHY[429],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}


# ---------------------------------------------------------------- orders
class Customer(Answer):
    id: str
    tier: Optional[str]
    terms: Optional[str] = Field(description="on account (e.g. net30): invoiced per shipment, not card-authorized")


UOM = Literal["each", "case", "pallet"]


class OrderLine(Answer):
    line_id: str
    sku: str
    qty: int = Field(description="how many of uom were ordered")
    uom: UOM
    pack: int = Field(description="eaches per uom")
    eaches: int = Field(description="qty in eaches; the *_qty counters below count eaches")
    unit_price: Money = Field(description="the price of one uom")
    status: OrderStatus
    promised_by: Optional[Timestamp]
    delivery: Delivery
    cancelled_qty: int
    shipped_qty: int
    delivered_qty: int
    returned_qty: int
    digital: bool


class FulfillmentLine(Answer):
    line_id: str
    sku: str
    qty: int = Field(description="eaches (stock, picks and milestones count eaches)")
    uom: UOM = Field(description="the unit the line was ordered in")
    uom_qty: int = Field(description="whole uom in qty (cases, pallets)")
    loose: int = Field(description="eaches beyond the whole uom")


class Arrival(Answer):
    at: Timestamp
    bay: Optional[str]
    note: Optional[str]


class FulfillmentView(Answer):
    fulfillment_id: str
    order_id: str
    node_id: str
    status: FulfillmentStatus
    lines: list[FulfillmentLine]
    carrier: Optional[str]
    tracking: Optional[str]
    ship_by: Optional[Timestamp]
    at_risk: Optional[str] = Field(description="the promise milestone it missed (ship_by, promised_by), until met")
    reason: Optional[str]
    kind: FulfillmentKind = Field(description="delivery (a parcel), pickup (pickup or curbside at a store), transfer"
                                              " (stock moving to the pickup store)")
    method: Optional[DeliveryMethod]
    promised_by: Optional[Timestamp] = Field(description="delivered by (a pickup: ready at the counter by)")
    due_at: Optional[Timestamp] = Field(description="what the work queue sorts by: the ship-by cutoff, else the"
                                                    " promised date")
    ready_at: Optional[Timestamp] = Field(description="a pickup: ready at the counter since")
    hold_until: Optional[Timestamp] = Field(description="a pickup: held for the customer until, then expired")
    arrival: Optional[Arrival] = Field(description="a curbside check-in: the customer is outside")
    delivered_at: Optional[Timestamp] = Field(description="delivered, collected at the counter, or (a transfer)"
                                                          " received at the store")
    to_node_id: Optional[str] = Field(description="a transfer: the pickup store it brings the units to")
    wave: Optional[Timestamp] = Field(None, description="the node's wave it was released in (policy.release: wave)")



class ReturnView(Answer):
    return_id: str
    order_id: str
    status: ReturnStatus
    method: Literal["ship_back", "in_store"]
    node_id: str
    reason: str
    lines: list[ReturnLineState]
    label: Optional[Label]
    refund_amount: Money


class PaymentView(Answer):
    payment_id: str
    kind: Literal["authorization", "capture", "void", "refund", "invoice"] = Field(
        description="invoice: a shipment of an order on account (customer.account), due on its terms")
    amount: Money
    currency: str
    status: str
    fulfillment_id: Optional[str]
    return_id: Optional[str]
    at: Timestamp


class TimelineEntry(Answer):
    at: Timestamp
    event: str
    detail: dict[str, Any] = Field(description="what happened, by event (a routing decision carries its candidates)")


class ShipToView(Answer):
    """One delivery address of the order (a B2B buyer's store or site) and what goes there."""

    ship_to: str = Field(description="a key of the address (lines to the same address share it)")
    postal_code: str
    lines: list[str] = Field(description="line ids")
    fulfillments: list[str] = Field(description="the shipments carrying them")
    promised_by: Optional[Timestamp]
    units: int
    units_by_status: dict[str, int] = Field(description="this ship-to's units by line status")


class OrderView(Answer):
    """An order as the read model has it: the timeline is the WISMO answer. A 201 with status `rejected` is an
    order taken but not fulfillable under its policy (no stock, no eligible node): the timeline says why."""

    order_id: str
    external_id: str
    channel: str
    customer: Customer
    status: OrderStatus
    currency: str
    total: Money
    policy: Policy
    requested_delivery_date: Optional[Day]
    promised_by: Optional[Timestamp]
    return_deadline: Optional[Timestamp]
    created_at: Timestamp
    at_risk: bool
    lines: list[OrderLine]
    fulfillments: list[FulfillmentView]
    returns: list[ReturnView]
    payments: list[PaymentView]
    timeline: list[TimelineEntry]
    ship_tos: list[ShipToView] = Field([], description="the order per delivery address, for a buyer shipping to "
                                                      "several sites")


class OrderSummary(Answer):
    order_id: str
    external_id: str
    channel: str
    customer_id: str
    status: OrderStatus
    total: Money
    currency: str
    promised_by: Optional[Timestamp]
    created_at: Timestamp
    at_risk: bool


class OrderList(Answer):
    orders: list[OrderSummary]
    next_cursor: Optional[str] = Field(description="pass as cursor= for the next page; null on the last")


# ---------------------------------------------------------------- holds
class HeldLine(Answer):
    line_id: str
    sku: str
    qty: int
    node_id: str


class HoldView(Answer):
    hold_id: str
    channel: str
    expires_at: Timestamp
    status: Literal["active", "expiring", "expired", "released", "converted"]
    order_id: Optional[str] = Field(description="the order it became")
    lines: list[HeldLine]


# ---------------------------------------------------------------- fulfillments
class PickListEntry(Answer):
    fulfillment_id: str
    line_id: str
    qty: int


class PickListItem(Answer):
    sku: str
    qty: int = Field(description="units of this SKU to pick across the listed fulfillments")
    picks: list[PickListEntry]


class FulfillmentList(Answer):
    fulfillments: list[FulfillmentView] = Field(description="customers waiting outside first, then by due time")
    pick_list: list[PickListItem] = Field(description="what the listed fulfillments not yet picked need, by SKU, for"
                                                      " picking many orders in one walk")


class MilestoneAnswer(Answer):
    fulfillment_id: str
    status: FulfillmentStatus
    changed: bool = Field(description="false for a repeat of a milestone already recorded")


class ReturnAnswer(Answer):
    return_id: str
    status: ReturnStatus
    label: Optional[Label] = None
    refund_amount: Money


class ExchangeAnswer(Answer):
    exchange_id: str
    return_id: str
    replacement_order_id: str = Field(description="an order of its own (GET /orders/{id}), linked to this one on "
                                                  "both timelines")
    replacement_status: Optional[OrderStatus] = Field(None, description="the replacement as promised (received: "
                                                                       "its promise follows, read it with GET)")
    label: Optional[Label] = None


# ---------------------------------------------------------------- network
class CapacityView(Answer):
    units_per_day: Optional[int]
    used_today: int
    orders_per_day: Optional[int]
    orders_today: int
    units_per_hour: Optional[int] = None
    used_this_hour: int = Field(0, description="units reserved at the node in the last hour")


class ScorecardView(Answer):
    fulfillments: int
    acceptance_rate: Rate
    fill_rate: Rate
    on_time_ship_rate: Rate
    return_rate: Rate
    avg_minutes_to_accept: Optional[float]
    rejection_reasons: dict[str, int]
    below_floor: list[str]
    flagged_for_offboarding: bool
    by_status: dict[str, int]


class NodeView(Answer):
    node_id: str
    name: str
    type: NodeType
    lat: float
    lon: float
    postal_code: str
    capabilities: list[Capability]
    enabled: bool
    capacity: CapacityView
    handling_cost: Money
    processing_time: str = Field(examples=["240m"])
    cutoff_time: str = Field(examples=["15:00"])
    timezone: str
    calendar: dict[str, Any]
    ships_whole: Optional[Literal["case", "pallet"]] = Field(
        description="ships only whole cases (or pallets) of the SKUs that have that pack size")
    scorecard: Optional[ScorecardView] = Field(description="staff's and the node's own partner's; null for others")


class NodeList(Answer):
    nodes: list[NodeView]


class ServiceAreasAnswer(Answer):
    postal_codes: int
    mappings: int


class ServedBy(Answer):
    node_id: str
    priority: int


class ServiceAreaView(Answer):
    postal_code: str
    nodes: list[ServedBy]


class SkuView(Answer):
    sku: str
    name: str
    weight_kg: float
    oversized: bool
    hazmat: bool
    digital: bool
    ship_alone: bool
    preorder_release_date: Optional[Day]
    allowed_node_types: list[NodeType]
    category: Optional[str]
    low_stock_threshold: Optional[int]
    pack_sizes: dict[Literal["case", "pallet"], int] = Field(description="eaches per case, per pallet")


# ---------------------------------------------------------------- inventory
class SnapshotAnswer(Answer):
    node_id: str
    as_of: Timestamp
    applied: int
    ignored_older: list[str] = Field(description="SKUs whose stored snapshot is newer than this one")


class Position(Answer):
    sku: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int
    damaged: int
    pending_inspection: int
    in_transit: int = Field(description="units on their way here by transfer (ship to store): not sellable here"
                                        " until received, nor at the node that sent them")
    as_of: Optional[Timestamp]


class InventoryView(Answer):
    node_id: str
    items: list[Position]


class AdjustmentsAnswer(Answer):
    applied: int
    duplicates: list[str] = Field(description="event ids already applied (nothing done for them)")


class InspectAnswer(Answer):
    node_id: str
    sku: str
    applied: bool = Field(description="false if this inspection's event id was recorded before")


class NodeStock(Answer):
    node_id: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int


class Incoming(Answer):
    node_id: str
    qty: int
    eta: Timestamp
    unclaimed: int = Field(description="what backorders and preorders have not claimed yet")


class SkuAvailability(Answer):
    sku: str
    available: int = Field(description="available-to-sell over the eligible nodes, as this channel and tier see it")
    nodes: list[NodeStock]
    stock_level: Literal["in_stock", "low", "out"]
    preorder_release_date: Optional[Day]
    incoming: list[Incoming]


class AvailabilityView(Answer):
    postal_code: Optional[str]
    channel: Optional[str]
    skus: list[SkuAvailability]
    freshness: Freshness


class LedgerPosition(Answer):
    on_hand: int
    reserved: int
    safety_stock: int
    available: int


class LedgerEntry(Answer):
    id: int
    at: Timestamp
    on_hand_delta: int
    reserved_delta: int
    disposition: Optional[str]
    reason: str
    event_id: str
    order_id: Optional[str]
    actor: Optional[str]


class LedgerView(Answer):
    node_id: str
    sku: str
    position: LedgerPosition
    entries: list[LedgerEntry]
    next_before_id: Optional[int] = Field(description="pass as before_id= for older entries; null at the start")


class FeedSettings(Answer):
    thresholds: list[int]
    step: Optional[int]


class ChannelView(Answer):
    channel: str
    node_types: list[NodeType]
    exclude_nodes: list[str]
    buffer_units: int
    buffer_pct: float
    feed: Optional[FeedSettings] = Field(None, description="its stock feed (availability.changed); null: none")


class SafetyStockDefaults(Answer):
    node_types: dict[str, int]
    categories: dict[str, int]


class SafetyStockDefaultsSet(SafetyStockDefaults):
    positions_updated: int


class Updated(Answer):
    updated: int


class ProtectedStock(Answer):
    node_id: str
    sku: str
    tier: str
    qty: int


class ProtectedList(Answer):
    protected: list[ProtectedStock]


class SupplyAnswer(Answer):
    applied: int
    changed_skus: list[str]
    orders_repromised: int = Field(description="backordered orders woken to re-promise from this supply")


# ---------------------------------------------------------------- routing
class RulesView(Answer):
    version: int
    rules: RoutingRules
    actor: Optional[str]
    created_at: Optional[Timestamp]


class Simulated(Plan):
    """The decision routing would make now, with every candidate and why it lost; nothing reserved."""

    model_config = ConfigDict(extra="forbid")
    simulated: Literal[True]
    reserved: Literal[False]
    supply_claims: list[SupplyClaimLine] = Field(default=[], exclude=True)


class ForecastVersion(Answer):
    version: int
    as_of: Timestamp
    horizon_days: int
    actor: Optional[str]
    created_at: Timestamp


class ForecastSet(ForecastVersion):
    entries: int
    bid_price_refresh: str


class ForecastEntry(Answer):
    postal_code: str
    skus: list[str]
    expected: float


class ForecastView(ForecastVersion):
    entries: list[ForecastEntry]


class BidPrice(Answer):
    node_id: str
    sku: str
    price: float
    forecast_version: int
    computed_at: Timestamp


class BidPrices(Answer):
    prices: list[BidPrice]


# ---------------------------------------------------------------- promise and carriers
class QuotedLine(Answer):
    line: int = Field(description="the cart line's position, from 1")
    sku: str
    uom: UOM
    qty: int = Field(description="whole uom available")
    requested: int = Field(description="uom asked for")
    eaches: int = Field(description="available, in eaches")
    requested_eaches: int


class PromiseOption(Answer):
    method: DeliveryMethod
    node_id: Optional[str] = Field(description="the node, when one serves it all")
    nodes: list[str]
    promised_by: Timestamp
    ship_by: Optional[Timestamp]
    carriers: list[str]
    lines_available: list[QuotedLine]
    complete: bool
    from_incoming_supply: bool


class Unavailable(Answer):
    method: DeliveryMethod
    reason: str


class Freshness(Answer):
    """How current the stock behind an answer is."""

    source: Literal["index", "database"] = Field(
        description="index: this API process's availability index, kept current by the database's change "
                    "announcements; database: read live (the index is off or not loaded)")
    seq: int = Field(description="the highest inventory change number the index has applied (0: a database read); "
                                 "comparable across API processes")
    as_of: Timestamp = Field(description="every stock change committed before this instant is in the answer")
    age_ms: float = Field(description="now − as_of when answered: how stale the answer can be at most")


class PromiseAnswer(Answer):
    quoted_at: Timestamp
    options: list[PromiseOption]
    unavailable: list[Unavailable]
    freshness: Freshness


class Zone(Answer):
    up_to_km: Optional[float] = Field(description="null: beyond the last zone")
    transit_days: int


class CarrierService(Answer):
    method: DeliveryMethod
    service: str
    pickup_weekdays: list[int]
    delivery_weekdays: list[int]
    zones: list[Zone]


class Closure(Answer):
    day: Day
    reason: str


class CarrierView(Answer):
    carrier: str
    services: list[CarrierService]
    holidays: list[Day]
    closures: list[Closure]


class CarrierList(Answer):
    carriers: list[CarrierView]


class ClosuresSet(Answer):
    carrier: str
    closures: list[Closure]


# ---------------------------------------------------------------- access and operations
class KeyCreated(Answer):
    key_id: str
    key: Optional[str] = Field(description="the key itself: shown in this answer only (null in a replay)")
    role: Role
    channel: Optional[str]
    node_id: Optional[str]
    tier: Optional[str]
    approver: bool = False
    carrier: Optional[str] = None


class KeyView(Answer):
    key_id: str
    role: Role
    channel: Optional[str]
    node_id: Optional[str]
    tier: Optional[str]
    approver: bool = False
    carrier: Optional[str] = None
    label: Optional[str]
    created_at: Timestamp
    revoked: bool


class KeyList(Answer):
    api_keys: list[KeyView]


class KeyRevoked(Answer):
    key_id: str
    revoked: Literal[True]


class Live(Answer):
    status: Literal["ok"]


class Health(Answer):
    status: Literal["ok", "degraded"]
    database: str = Field(description="ok, or error: <what>")
    temporal: str = Field(description="ok, or error: <what>")


class NodeKpis(Answer):
    node_id: str
    acceptance_rate: Rate
    fill_rate: Rate
    on_time_ship_rate: Rate


class PickupKpis(Answer):
    pickups: int = Field(description="pickup and curbside fulfillments")
    collected: int
    expired_rate: Rate = Field(description="not collected before the hold ended, of those that ended")
    median_ready_minutes: Optional[float] = Field(description="release to ready at the counter (the pickup ready-time)")
    curbside_arrivals: int = Field(description="collected pickups whose customer checked in (arrived)")
    median_arrival_to_collection_minutes: Optional[float] = Field(
        description="the customer's check-in to collection: how long they waited outside")


class KpiDay(Answer):
    day: Day
    orders: int = Field(description="placed that day")
    cancelled: int
    delivered: int
    on_time: int = Field(description="delivered by their first promise")
    complete_on_time: int = Field(description="delivered complete by their first promise")
    order_fulfillment_rate: Rate
    cancellation_rate: Rate
    split_rate: Rate
    median_promise_slack_days: Optional[float]
    median_minutes_to_release: Optional[float]
    median_hours_pick_to_ship: Optional[float]
    cost_per_order: Optional[Money]


class Kpis(Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    channel: Optional[str]
    from_: Optional[Day] = Field(alias="from", description="first day of the range (UTC); null: from the start")
    to: Optional[Day] = Field(description="last day of the range (UTC), included; null: to now")
    orders: int
    order_fulfillment_rate: Rate = Field(description="delivered complete and on time against the first promise, of "
                                                     "those delivered or cancelled")
    cancellation_rate: Rate
    cancellation_by_cause: dict[str, Rate] = Field(description="requested, payment, approval, unavailable, "
                                                               "carrier_exception, exchange, support: each of all orders")
    split_rate: Rate
    on_time_rate: Rate = Field(description="delivered by the first promise, of those delivered")
    on_time_rate_latest_promise: Rate = Field(description="the same against the latest (re-)promise: how much "
                                                          "re-promising flatters it")
    median_promise_slack_days: Optional[float] = Field(description="first promise minus delivery, in days (negative: "
                                                                   "late)")
    median_minutes_to_release: Optional[float] = Field(description="placed to the first fulfillment at a node")
    median_hours_pick_to_ship: Optional[float]
    cost_per_order: Optional[Money] = Field(description="the landed cost the router priced for each order's sourcing")
    nodes: list[NodeKpis]
    pickup: PickupKpis
    series: list[KpiDay] = Field(description="per day of placing, for trend charts")


def add_schemas(schema: dict[str, Any], *models: type[BaseModel]) -> dict[str, Any]:
    """Models a route documents by reference only (the milestone bodies, read by the milestone they are for)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(generated.pop("$defs", {}))
        components[model.__name__] = generated
    return schema


def add_common_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """One error schema everywhere: FastAPI's own 422 (HTTPValidationError) is a Problem too (its detail the list of
    wrong fields), and what the request guard answers before any route is documented on every operation that takes
    a body: 400 (a body that is not JSON, a malformed Idempotency-Key) and 413 (over NODAL_MAX_BODY_BYTES)."""
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for ops in schema["paths"].values():
        for method, op in ops.items():
            answers = op["responses"]
            if "422" in answers:
                answers["422"] = {"description": _WHY[422], **ref}
            if "requestBody" in op or method == "post":
                for code in (400, 413):
                    answers.setdefault(str(code), {"description": _WHY[code], **ref})
    for unused in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(unused, None)
    return schema


# ---------------------------------------------------------------- outbound events
class WebhookView(Answer):
    name: str
    url: str
    events: list[str]
    channel: Optional[str]
    node_id: Optional[str]
    created_at: Timestamp
    updated_at: Timestamp
    previous_secret_until: Optional[Timestamp] = Field(description="after a rotation: the old secret signs too until")
    delivered: int
    failed: int = Field(description="deliveries given up after NODAL_WEBHOOK_RETRY_FOR")
    failed_attempts: int = Field(description="attempts that got no 2xx (each retried)")
    pending: int
    oldest_pending_at: Optional[Timestamp] = Field(description="when the oldest undelivered event was written")


class WebhookSaved(WebhookView):
    secret: Optional[str] = Field(description="whsec_…: shown when the subscription is created, never again (rotate "
                                              "it to get a new one)")
    created: bool


class WebhookList(Answer):
    webhooks: list[WebhookView]


class WebhookDeleted(Answer):
    name: str
    deleted: Literal[True]


class SecretRotated(Answer):
    name: str
    secret: Optional[str] = Field(description="the new whsec_… secret: shown once (a replay by Idempotency-Key has null)")
    previous_secret_until: Timestamp


class DeliveryView(Answer):
    delivery_id: int
    event_id: str = Field(description="the webhook-id header: the same on every attempt")
    type: Optional[str] = Field(description="null once the event is past NODAL_EVENT_RETENTION")
    order_id: Optional[str]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: Optional[Timestamp]
    last_status_code: Optional[int]
    last_error: Optional[str]
    created_at: Timestamp
    delivered_at: Optional[Timestamp]


class DeliveryList(Answer):
    deliveries: list[DeliveryView]
    next_cursor: Optional[int] = Field(description="pass as cursor= for the next page (older deliveries)")


class Replayed(Answer):
    name: str
    requeued: int = Field(description="deliveries due again now (or new for events before the subscription)")


class FeedItem(Answer):
    sku: str
    available: int = Field(description="the channel's available-to-sell (its view and buffers applied)")
    seq: Optional[int] = Field(None, description="changes: the change's position; pass the last as since=")
    updated_at: Optional[Timestamp] = None


class FeedPage(Answer):
    channel: str
    items: list[FeedItem]
    next_cursor: Optional[str] = Field(description="snapshot: the next page's cursor (null on the last page)")
    since: int = Field(description="follow changes from here: GET …/feed?since=<this>")


# ---------------------------------------------------------------- order files
class ImportProblem(Answer):
    row: Optional[int] = Field(None, description="CSV: the row (the header is row 1)")
    segment: Optional[int] = Field(None, description="X12: the segment's position in the file (the ISA is 1)")
    reason: str


class ImportResult(Answer):
    external_id: str
    status: Literal["created", "existing", "rejected"]
    order_id: Optional[str] = None
    errors: Optional[list[ImportProblem]] = None


class ImportAnswer(Answer):
    orders: list[ImportResult]
    created: int
    existing: int
    rejected: int
