"""Pydantic messages that cross the workflow boundary (workflow inputs, activity payloads, Updates).

Plain data only: importable inside the Temporal sandbox, never touching the database.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from models.status import DeliveryMethod, FulfillmentKind, FulfillmentStatus, OrderStatus, ReturnStatus


class Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A price as clients send it: a number or a decimal string, at most 10 digits before the point and 2 after. The
# OpenAPI says so (pydantic alone documents "any string"), so a generated client sends what is accepted.
UnitPrice = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), WithJsonSchema({"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 9_999_999_999.99, "multipleOf": 0.01},
    {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"}], "title": "Unit Price"}, mode="validation")]


# ---------------------------------------------------------------- order intake
class Address(BaseModel):
    # Free-form address fields are kept (extra allowed); only these drive routing.
    model_config = ConfigDict(extra="allow")
    postal_code: str = Field(min_length=1, max_length=32)
    lat: Optional[float] = Field(default=None, ge=-90, le=90)
    lon: Optional[float] = Field(default=None, ge=-180, le=180)

    def ship_to(self) -> str:
        """The place itself, as a short key: lines to two addresses of one postal code are two shipments (a
        distributor's stores in one town). No personal data in it, and the same for the same address."""
        fields = self.model_dump(mode="json", exclude={"lat", "lon"})
        text = json.dumps({k: str(v).strip().lower() for k, v in fields.items() if v not in (None, "")},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class Delivery(Msg):
    method: DeliveryMethod
    address: Optional[Address] = None
    pickup_node_id: Optional[str] = None


Backorder = Literal["allow", "cancel_remaining", "ship_complete_only"]
# The unit a line is ordered in: qty counts it, unit_price prices one of it; stock counts eaches (SKU pack_sizes).
UnitOfMeasure = Literal["each", "case", "pallet"]
MAX_LINE_EACHES = 10_000_000  # a line's units in eaches (5,000 pallets of 2,000)


class OrderLineIn(Msg):
    line_id: Optional[str] = Field(default=None, min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(gt=0, le=100_000, description="how many of uom")
    uom: UnitOfMeasure = Field(default="each", description="each, or a pack size the SKU declares (case, pallet)")
    unit_price: UnitPrice = Field(description="the price of one uom")
    delivery: Delivery
    backorder: Optional[Backorder] = Field(default=None, description="this line's policy.backorder")


class Policy(Msg):
    ship_complete: bool = False
    fill_or_kill: bool = False
    min_fill_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    max_splits: int = Field(default=2, ge=0, le=10)
    # "line": every line is sourced on its own, from its best node (urgent B2B parts); "order": lines
    # going to the same place are planned together to share packages.
    sourcing: Literal["order", "line"] = "order"
    # Placed, promised and reserved, then held until an approver of the buyer (a client key flagged approver,
    # or support) approves it; declined or not approved within Windows.approval, it is cancelled.
    approval_required: bool = False
    # "wave": released to a node that works in waves (calendar.waves) at its next wave, lines to one place from
    # one node in one shipment per wave; "immediate": as soon as the remorse window ends.
    release: Literal["immediate", "wave"] = "immediate"
    # What becomes of a line's units no node has now: "allow" waits for them (incoming supply, restocks: later
    # shipments, each dated); "cancel_remaining" ships what there is and cancels the rest; "ship_complete_only"
    # ships the line whole from one node or not yet. A line may say otherwise (its own backorder).
    backorder: Backorder = "allow"
    # A parcel the carrier lost or damaged: "reship" sends its units again from whichever node has them (at no
    # charge; what no node has now is refunded), "refund" pays them back. A refused parcel is always refunded.
    carrier_exception: Literal["reship", "refund"] = "reship"
    # A re-sourced shipment (after a rejection, a timeout, a short pick, a lost parcel) that would arrive after the
    # promise by ground goes express when express arrives sooner; the brand pays the difference.
    expedite: bool = True


class Account(Msg):
    """A B2B customer buying on account: invoiced per shipment, due ``terms`` days later, never card-authorized."""

    terms: str = Field(pattern=r"^net[0-9]{1,3}$", examples=["net30"])
    credit_limit: UnitPrice = Field(description="the customer's open balance plus an order may not exceed it "
                                                "without an approver's approval")

    @property
    def days(self) -> int:
        return int(self.terms[3:])


class Customer(Msg):
    id: str = Field(min_length=1, max_length=128)
    tier: Optional[str] = Field(default=None, max_length=32)
    email: Optional[str] = Field(default=None, max_length=254)
    account: Optional[Account] = None


class Line(Msg):
    """An order line as the workflow holds it (line_id assigned), in eaches: qty is the ordered packs × pack and
    unit_price one each's share of a pack's price (exact enough that money, summed and rounded to the cent,
    comes out as the packs' prices)."""

    line_id: str
    sku: str
    qty: int
    unit_price: Decimal
    delivery: Delivery
    uom: UnitOfMeasure = "each"
    pack: int = 1  # eaches per uom: every allocation of the line is whole packs
    backorder: Optional[Backorder] = None  # the order's policy.backorder when None


def eaches(qty: int, unit_price: Decimal, pack: int) -> tuple[int, Decimal]:
    """A line ordered as ``qty`` packs of ``pack`` at ``unit_price`` a pack, in eaches and price per each."""
    return qty * pack, unit_price if pack == 1 else unit_price / pack


def cents(amount: Decimal) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class Windows(Msg):
    """The order's clocks and limits, fixed at placement (settings may change while it runs)."""

    remorse: timedelta
    accept_timeout: timedelta
    return_window: timedelta
    max_reroutes: int = 5
    # A node gets at most this many lines per fulfillment (a pick list, a shipment); more become several.
    max_fulfillment_lines: int = 1000
    # A card authorization holds this long at the gateway; an order that waits longer authorizes again.
    authorization_validity: timedelta = timedelta(days=7)
    # After a declined re-authorization the order waits this long for the payment before cancelling.
    payment_hold: timedelta = timedelta(days=3)
    # A long-lived order continues as new once its history holds this many events.
    history_limit: int = 10_000
    pickup_hold: timedelta = timedelta(days=7)
    pickup_reminder: timedelta = timedelta(days=1)
    approval: timedelta = timedelta(days=3)  # an order awaiting approval is cancelled after this


class OrderInput(Msg):
    order_id: str
    external_id: str
    channel: str
    customer: Customer
    lines: list[Line]
    policy: Policy = Policy()
    currency: str = "USD"
    requested_delivery_date: Optional[date] = None
    windows: Windows
    # A checkout hold whose stock this order takes over.
    hold_id: Optional[str] = None
    # A replacement order: the exchange it serves (the returned units pay for it, up to their value).
    exchange_of: Optional["ExchangeOf"] = None


# ---------------------------------------------------------------- routing and inventory
class LineQty(Msg):
    line_id: str
    sku: str = ""
    qty: int


class PlanLine(Msg):
    line_id: str
    sku: str
    qty: int
    delivery: Delivery
    exclude_nodes: list[str] = []
    due: Optional[date] = None  # must arrive by then (its promise on a reroute): later nodes cost more
    pack: int = 1  # allocated in whole packs of this many eaches (a line ordered by the case)
    complete: bool = False  # all its units from one node, or none (policy.backorder ship_complete_only)


class PlanRequest(Msg):
    order_id: str
    channel: str
    customer_tier: Optional[str] = None
    lines: list[PlanLine]
    policy: Policy = Policy()
    exclude_nodes: list[str] = []
    to_node: Optional[str] = None
    at: datetime
    # Stock held for this order at checkout counts as available to it.
    hold_id: Optional[str] = None
    # When the work can reach a node: the remorse window's end for a new order (None: at).
    release_at: Optional[datetime] = None
    # A B2B delivery date: shipped on the last day that still arrives by then, and due by then.
    requested_delivery_date: Optional[date] = None


class Candidate(Msg):
    """A node the router looked at, and why it won or lost."""

    node_id: str
    outcome: Literal["chosen", "lost", "ineligible"]
    reason: str
    cost: Optional[Decimal] = None


class Allocation(Msg):
    node_id: str
    method: DeliveryMethod
    postal_code: Optional[str] = None
    ship_to: Optional[str] = None  # Address.ship_to of its lines' delivery address
    lines: list[LineQty]
    cost: Decimal
    distance_km: float = 0.0
    promised_by: Optional[datetime] = None
    ship_by: Optional[datetime] = None
    # Preorders and B2B dates: reserved now, released to the node no earlier than this.
    hold_until: Optional[datetime] = None
    carrier: Optional[str] = None  # the carrier service the promise counted on
    service: Optional[str] = None
    # Ship to store: this node sends the units to the pickup store, which hands them over.
    transfer_to: Optional[str] = None
    wave: Optional[datetime] = None  # released in the node's wave of this instant (policy.release: wave)
    expedited: bool = False  # sent express instead of ground to keep a re-sourced line's promise (policy.expedite)


class SupplyClaimLine(Msg):
    """Units of one incoming supply promised to one waiting order line."""

    line_id: str
    supply_id: str
    sku: str
    qty: int


class Plan(Msg):
    feasible: bool
    reason: str = ""
    allocations: list[Allocation] = []
    unfilled: list[LineQty] = []
    # When unfilled units can be promised from incoming supply (line_id → promised delivery).
    backorder_dates: dict[str, datetime] = {}
    # The incoming supply those dates rely on, to be claimed with the reservation.
    supply_claims: list[SupplyClaimLine] = []
    rules_version: int = 0  # the routing rules the decision used
    # Whether every candidate node set was priced within the budget, and how good the answer is at worst:
    # no plan costs less than lower_bound in the search's terms (search_cost is the chosen plan's).
    exact: bool = True
    lower_bound: Decimal = Decimal("0")
    search_cost: Decimal = Decimal("0")
    total_cost: Decimal = Decimal("0")
    # The part of search_cost that prices the forecast's later orders (bid prices on the units taken).
    future_cost: Decimal = Decimal("0")
    candidates: list[Candidate] = []
    digital: list[LineQty] = []  # lines of digital SKUs: no node, no reservation; delivered at release


class BidPriceRefresh(Msg):
    """One re-solve of the forecast LP (activities/routing.refresh_bid_prices)."""

    forecast_version: int  # 0: no forecast, every price cleared
    horizon_left: float  # the share of the forecast's horizon still ahead
    positions_priced: int
    scarce_positions: int  # positions with a price above zero
    seconds: float


class FulfillmentAssignment(Msg):
    fulfillment_id: str
    node_id: str
    lines: list[LineQty]


class ReserveRequest(Msg):
    order_id: str
    fulfillments: list[FulfillmentAssignment]
    at: datetime
    channel: Optional[str] = None
    customer_tier: Optional[str] = None
    # Released in the same transaction as the order's own reservations land.
    hold_id: Optional[str] = None
    # The claims on incoming supply of these lines are replaced by ``supply_claims`` (first come first served).
    claim_lines: list[str] = []
    supply_claims: list[SupplyClaimLine] = []


class ReleaseClaims(Msg):
    order_id: str
    line_ids: Optional[list[str]] = None  # None: every claim of the order


class ReserveResult(Msg):
    ok: bool
    short: list[LineQty] = []
    short_nodes: list[str] = []


class MergeReservations(Msg):
    order_id: str
    into: str  # the fulfillment that ships them
    merged: list[str]  # the planned fulfillments consolidated into it


class ReservationTarget(Msg):
    """Set one fulfillment line's reservation to ``qty`` (0 releases it): idempotent by target."""

    order_id: str
    fulfillment_id: str
    line_id: str
    node_id: str
    sku: str
    qty: int
    reason: str
    # Units the node could not find when picking: on hand goes down by this (phantom stock).
    not_found: int = 0


class ConsumeRequest(Msg):
    order_id: str
    fulfillment_id: str
    node_id: str
    lines: list[LineQty]


class ReturnedUnits(Msg):
    line_id: str
    sku: str
    qty: int
    disposition: Literal["sellable", "damaged", "pending_inspection"]


class RestockRequest(Msg):
    order_id: str
    return_id: str
    node_id: str
    lines: list[ReturnedUnits]


# ---------------------------------------------------------------- money, carriers, notifications
class PaymentRequest(Msg):
    order_id: str
    idempotency_key: str
    # invoice: a shipment of an order on account (in place of a capture; no gateway involved)
    kind: Literal["authorization", "capture", "void", "refund", "invoice"]
    amount: Decimal
    currency: str = "USD"
    fulfillment_id: Optional[str] = None
    return_id: Optional[str] = None
    at: datetime
    # A capture or void names the authorization it draws on: the gateway refuses one that has expired.
    authorization: Optional[str] = None
    on_account: bool = False  # the customer's account, not a card: invoices and their credits are ours to record

    # Lines ordered by the case price each unit at a share of the case: money is rounded to the cent here.
    _cents = field_validator("amount")(classmethod(lambda cls, v: cents(v)))


class CreditCheck(Msg):
    order_id: str
    customer_id: str
    amount: Decimal
    credit_limit: Decimal
    at: datetime  # the order's clock: invoices not yet due by then count


class CreditVerdict(Msg):
    ok: bool
    open_balance: Decimal
    reason: str = ""


class PaymentRecord(Msg):
    payment_id: str
    kind: str
    amount: Decimal
    currency: str = "USD"
    status: Literal["succeeded", "declined"]
    gateway_ref: str = ""
    fulfillment_id: Optional[str] = None
    return_id: Optional[str] = None
    at: datetime


class ShipmentRequest(Msg):
    order_id: str
    fulfillment_id: str
    node_id: str
    postal_code: Optional[str]
    method: DeliveryMethod
    units: int
    weight_kg: float = 0.0
    carrier: Optional[str] = None
    tracking: Optional[str] = None


class Label(Msg):
    carrier: str
    service: str
    tracking: str
    rate: Decimal
    currency: str = "USD"


class ReturnLabelRequest(Msg):
    order_id: str
    return_id: str
    node_id: str
    units: int


class Notification(Msg):
    order_id: str
    event: Literal["confirmed", "released", "shipped", "delivered", "refunded", "cancelled", "rejected", "delayed",
                   "at_risk", "payment_required", "ready_for_pickup", "pickup_reminder", "pickup_expired",
                   "collected", "exchange_charged", "approved", "shipment_exception"]
    key: str
    detail: dict[str, Any] = {}


# ---------------------------------------------------------------- fulfillment workflow
class FulfillmentInput(Msg):
    fulfillment_id: str
    order_id: str
    parent_workflow_id: str
    node_id: str
    lines: list[LineQty]
    unit_prices: dict[str, Decimal]
    currency: str = "USD"
    method: DeliveryMethod
    postal_code: Optional[str] = None
    accept_timeout: timedelta
    ship_by: Optional[datetime] = None
    carrier: Optional[str] = None  # the carrier the promise counted on: labels use it unless the node names one
    promised_by: Optional[datetime] = None
    wave: Optional[datetime] = None  # the node's wave it was released in
    on_account: bool = False  # the customer is invoiced per shipment instead of charged
    authorization: Optional[str] = None  # the order's authorization the shipment's capture draws on
    kind: FulfillmentKind = FulfillmentKind.delivery
    # A pickup: how long the store holds it once ready (the node may say otherwise), and the reminder's lead.
    pickup_hold: timedelta = timedelta(days=7)
    pickup_reminder: timedelta = timedelta(days=1)
    # A transfer: the store it sends the units to, and the pickup that waits there for them. A pickup served by
    # a transfer starts with the units in the store's hands (picked), its next step ready.
    to_node_id: Optional[str] = None
    pickup_id: Optional[str] = None
    start_status: Optional[FulfillmentStatus] = None
    # Units of a line already paid for (a reshipment of a lost parcel): its capture leaves them out.
    prepaid: dict[str, int] = {}


class ReceiveTransfer(Msg):
    """A transfer reaches the pickup store: the units land on its shelf, held for the pickup waiting there."""

    order_id: str
    transfer_id: str
    pickup_id: str
    node_id: str
    lines: list[LineQty]


class FulfillmentEvent(Msg):
    """What a fulfillment tells its order: a status change, a shortfall, a cancellation answer."""

    fulfillment_id: str
    node_id: str
    status: FulfillmentStatus
    # What it holds now; None: as before (the Fulfillment type sends them only when they change).
    lines: Optional[list[LineQty]] = None
    # Units the order must source elsewhere (rejection, timeout, short pick).
    unsourced: list[LineQty] = []
    cancelled: list[LineQty] = []
    carrier: Optional[str] = None
    tracking: Optional[str] = None
    reason: Optional[str] = None
    payment: Optional[PaymentRecord] = None
    at: datetime
    seq: int
    request_id: Optional[str] = None
    at_risk: Optional[str] = None  # a milestone of the promise was missed: which one


class CancelLines(Msg):
    """Ask a fulfillment to drop unshipped units; ``lines`` None means everything."""

    request_id: str
    lines: Optional[list[LineQty]] = None
    reason: str
    # A move (support reorchestration) hands the units back to the order instead of cancelling them.
    move: bool = False


class RejectIn(Msg):
    reason: str = Field(min_length=1, max_length=500)


class PickLine(Msg):
    line_id: str
    qty: int = Field(ge=0)


class PickIn(Msg):
    lines: list[PickLine] = Field(min_length=1)


class ExceptionIn(Msg):
    """A carrier's exception on a shipped parcel."""

    reason: Literal["lost", "damaged", "refused", "returned_to_sender"]
    detail: Optional[str] = Field(default=None, max_length=300)
    at: Optional[datetime] = None  # the carrier's scan time


class ShipIn(Msg):
    carrier: Optional[str] = Field(default=None, max_length=64)
    tracking: Optional[str] = Field(default=None, max_length=128)


class CollectIn(Msg):
    """The customer at the counter: the code from their notification, and what they take (all by default; a
    line they refuse, or take fewer of, is cancelled and its money released)."""

    pickup_code: str = Field(min_length=1, max_length=32)
    lines: Optional[list[PickLine]] = Field(default=None, min_length=1)


class ArrivedIn(Msg):
    """A curbside check-in: the customer is outside."""

    bay: Optional[str] = Field(default=None, max_length=32)
    note: Optional[str] = Field(default=None, max_length=200)


class MilestoneResult(Msg):
    fulfillment_id: str
    status: FulfillmentStatus
    changed: bool


# ---------------------------------------------------------------- order Updates
class ModifyLine(Msg):
    """A line as a modification makes it, in eaches like Line (the API converts what the client ordered)."""

    line_id: Optional[str] = None
    sku: str
    qty: int = Field(gt=0, le=MAX_LINE_EACHES)
    unit_price: Decimal = Field(ge=0)
    delivery: Optional[Delivery] = None
    uom: UnitOfMeasure = "each"
    pack: int = 1
    backorder: Optional[Backorder] = None


class ModifyIn(Msg):
    lines: Optional[list[ModifyLine]] = None
    address: Optional[Address] = None
    policy: Optional[Policy] = None
    requested_delivery_date: Optional[date] = None


class CancelLine(Msg):
    line_id: str
    qty: Optional[int] = Field(default=None, gt=0)


class CancelIn(Msg):
    lines: Optional[list[CancelLine]] = None
    reason: str = Field(default="customer_request", min_length=1, max_length=500)


class ReorchestrateIn(Msg):
    fulfillment_id: Optional[str] = None
    exclude_nodes: list[str] = []
    to_node: Optional[str] = None
    reason: str = Field(min_length=1, max_length=500)


class ReturnLineIn(Msg):
    line_id: str
    qty: int = Field(gt=0)


class ReturnIn(Msg):
    lines: list[ReturnLineIn] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=500)
    method: Literal["ship_back", "in_store"] = "ship_back"
    node_id: Optional[str] = None


class ReceiveLineIn(Msg):
    line_id: str
    qty: int = Field(ge=0)
    disposition: Literal["sellable", "damaged", "pending_inspection"]


class ReceiveIn(Msg):
    lines: list[ReceiveLineIn] = Field(min_length=1)


class ApproveIn(Msg):
    note: Optional[str] = Field(None, max_length=500)
    by: Optional[str] = Field(None, max_length=64, description="set by the API: the approving key")


class DeclineIn(Msg):
    reason: str = Field(min_length=1, max_length=500)
    by: Optional[str] = Field(None, max_length=64, description="set by the API: the declining key")


class ExchangeLineIn(Msg):
    line_id: str = Field(description="the delivered line whose units come back")
    qty: int = Field(gt=0)
    sku: str = Field(min_length=1, max_length=64, description="the replacement (the same SKU, or another size or "
                                                               "colour)")
    unit_price: Optional[Decimal] = Field(
        None, ge=0, max_digits=12, decimal_places=2,
        description="the replacement's price; omitted: the returned line's (an even exchange). A difference is "
                    "charged on the replacement order, or refunded when the return is received")


class ExchangeIn(Msg):
    lines: list[ExchangeLineIn] = Field(min_length=1, max_length=100)
    method: Literal["ship_back", "in_store"] = "ship_back"
    node_id: Optional[str] = None
    advance: bool = Field(False, description="ship the replacement now, before the return arrives (the customer is "
                                             "charged for it if the return never arrives by the window's end)")
    reason: str = Field(min_length=1, max_length=500)


class ExchangeOf(Msg):
    """What a replacement order knows of its exchange."""

    order_id: str  # the original order
    exchange_id: str
    return_id: str
    advance: bool
    credits: dict[str, Decimal] = {}  # replacement line id → the returned unit's price, paid already


class ExchangeState(Msg):
    exchange_id: str
    return_id: str
    replacement_order_id: str
    advance: bool
    due_by: datetime  # the return must arrive by then
    # original line id → (qty, replacement sku, replacement unit price)
    lines: list[dict[str, Any]]
    status: Literal["open", "returned", "charged", "void", "failed"] = "open"
    settled_amount: Decimal = Decimal("0")  # refunded (> 0) or charged (< 0) when it closed


class ExchangeResult(Msg):
    exchange_id: str
    return_id: str
    replacement_order_id: str
    label: Optional[Label] = None


# ---------------------------------------------------------------- order state (Query, read model)
class TimelineEntry(Msg):
    key: str
    at: datetime
    event: str
    detail: dict[str, Any] = {}


class LineState(Msg):
    line_id: str
    sku: str
    qty: int
    unit_price: Decimal
    delivery: Delivery
    status: str = OrderStatus.received.value
    cancelled_qty: int = 0
    shipped_qty: int = 0
    delivered_qty: int = 0
    returned_qty: int = 0
    promised_by: Optional[datetime] = None
    digital: bool = False  # delivered by the order itself at release; not returnable
    uom: UnitOfMeasure = "each"
    pack: int = 1


class FulfillmentState(Msg):
    fulfillment_id: str
    node_id: str
    status: FulfillmentStatus
    lines: list[LineQty]
    carrier: Optional[str] = None
    tracking: Optional[str] = None
    ship_by: Optional[datetime] = None
    promised_by: Optional[datetime] = None
    reason: Optional[str] = None
    shipped_at: Optional[datetime] = None
    delivered_at: Optional[datetime] = None
    last_seq: int = 0
    # For the node's partner scorecard.
    released_at: Optional[datetime] = None
    accepted_at: Optional[datetime] = None
    picked_at: Optional[datetime] = None
    requested_units: int = 0
    short_units: int = 0  # asked for, not found at pick
    at_risk: Optional[str] = None  # the missed milestone (ship-by or promised delivery), until it is met
    kind: FulfillmentKind = FulfillmentKind.delivery
    method: Optional[DeliveryMethod] = None
    # A pickup: ready at the counter since, held until, the customer's curbside check-in.
    ready_at: Optional[datetime] = None
    hold_until: Optional[datetime] = None
    arrived_at: Optional[datetime] = None
    bay: Optional[str] = None
    arrival_note: Optional[str] = None
    to_node_id: Optional[str] = None  # a transfer's destination store
    pickup_id: Optional[str] = None  # a transfer's pickup, started at the store when it is received
    wave: Optional[datetime] = None  # the node's wave it was released in
    prepaid: dict[str, int] = {}  # a reshipment: units per line paid for with the parcel that was lost


class ReturnLineState(Msg):
    line_id: str
    qty: int
    received_qty: int = 0
    disposition: Optional[str] = None


class ReturnState(Msg):
    return_id: str
    status: ReturnStatus
    method: str
    node_id: str
    reason: str
    lines: list[ReturnLineState]
    label: Optional[Label] = None
    refund_amount: Decimal = Decimal("0")
    exchange_id: Optional[str] = None  # the exchange these units pay for (refunded only for a difference)


class ReturnRouteRequest(Msg):
    order_id: str
    origin_node_id: str  # the node that shipped the units
    postal_code: Optional[str] = None  # where they come back from
    lat: Optional[float] = None
    lon: Optional[float] = None


class ReturnRouteAnswer(Msg):
    node_id: str
    rule: str  # origin | nearest | node
    why: str
    rules_version: int


class ReturnResult(Msg):
    return_id: str
    status: ReturnStatus
    label: Optional[Label] = None
    refund_amount: Decimal = Decimal("0")


class OrderState(Msg):
    order_id: str
    external_id: str
    channel: str
    customer_id: str
    customer_tier: Optional[str] = None
    status: OrderStatus
    currency: str
    policy: Policy
    requested_delivery_date: Optional[date] = None
    lines: list[LineState]
    fulfillments: list[FulfillmentState] = []
    returns: list[ReturnState] = []
    payments: list[PaymentRecord] = []
    promised_by: Optional[datetime] = None
    delivered_at: Optional[datetime] = None
    return_deadline: Optional[datetime] = None
    reason: Optional[str] = None
    version: int = 0
    at_risk: bool = False  # a live fulfillment missed a promise milestone


class LineUpdates(Msg):
    """Lines the read model already has, as columns: what changes once a line is placed (its status, counters and
    promise). A phase change of a 20,000-line order is about 1 MB this way instead of 7 MB of whole lines."""
    line_id: list[str] = []
    status: list[str] = []
    qty: list[int] = []
    cancelled_qty: list[int] = []
    shipped_qty: list[int] = []
    delivered_qty: list[int] = []
    returned_qty: list[int] = []
    promised_by: list[Optional[datetime]] = []
    digital: list[bool] = []


class OrderSnapshot(Msg):
    """What the read model needs after a step: the state plus the timeline entries not yet written.

    With ``removed_lines`` set (the order workflow since its rebuild) ``state.lines`` and ``state.returns`` hold
    only what changed since the last snapshot (whole lines only when new to the read model, the others in
    ``line_updates``), and the lines named there are gone; without it (orders of the frozen v1 workflow) they are
    complete."""

    state: OrderState
    customer_email: Optional[str] = None
    total: Decimal
    timeline: list[TimelineEntry] = []
    created_at: datetime
    removed_lines: Optional[list[str]] = None
    line_updates: Optional[LineUpdates] = None
    # The workflow attempt writing (workflows/order/mirror.py stamp), and the one that wrote the order's last
    # snapshot: a row stamped in between was written by an attempt Temporal discarded.
    stamp: int = 0
    after: int = 0


class FulfillmentSnapshot(Msg):
    order_id: str
    fulfillment: FulfillmentState
    timeline: list[TimelineEntry] = []
    version: int
    # False: the lines are as last written (fulfillment.lines is left empty; a milestone of a thousand-line
    # fulfillment need not send them again).
    lines_changed: bool = True


class PromiseView(Msg):
    promised_by: Optional[datetime] = None
    lines: list[dict[str, Any]] = []


class PlacedOrder(Msg):
    order_id: str
    status: OrderStatus
    promise: PromiseView


OrderInput.model_rebuild()  # its exchange_of is defined further down


# ---------------------------------------------------------------- outbound events: their long-running processes
class WebhookJob(Msg):
    """A subscription's delivery process: deliver for ``run_for`` per activity run, heartbeating."""

    name: str
    generation: str
    run_for: timedelta = timedelta(minutes=10)
    heartbeat: timedelta = timedelta(seconds=15)


class FeedJob(Msg):
    """The channel feeds' process: watch stock changes for ``run_for`` per activity run, heartbeating."""

    run_for: timedelta = timedelta(minutes=10)
    heartbeat: timedelta = timedelta(seconds=15)
