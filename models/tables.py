"""SQLModel tables: the network, inventory, the order read model and the records of money and messages."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, LargeBinary, Numeric, String, UniqueConstraint, func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False,
                                                          server_default=func.now(), **kw))


def _json(default: Any = None) -> Any:
    factory = (lambda: list(default)) if isinstance(default, list) else (lambda: dict(default or {}))
    return Field(default_factory=factory, sa_column=Column(JSONType, nullable=False))


def _money() -> Any:
    return Field(default=Decimal("0"), sa_column=Column(Numeric(14, 2), nullable=False))


# ---------------------------------------------------------------- network and catalog
class Node(SQLModel, table=True):
    __tablename__ = "nodes"
    node_id: str = Field(primary_key=True, max_length=64)
    name: str
    type: str = Field(index=True)  # dc|store|distributor|retailer|dropship|3pl
    lat: float
    lon: float
    postal_code: str = Field(default="", index=True)
    capabilities: list[str] = _json([])
    enabled: bool = True
    units_per_day: Optional[int] = None
    orders_per_day: Optional[int] = None  # fulfillments a node takes per day (its own calendar day)
    units_per_hour: Optional[int] = None  # units it picks for online orders in any hour (a store's staff)
    handling_cost: Decimal = _money()
    processing_time_minutes: int = 120
    cutoff_time: str = "15:00"
    timezone: str = "UTC"
    calendar: dict[str, Any] = _json({})
    ships_whole: Optional[str] = Field(default=None, max_length=16)  # case|pallet: only whole ones of SKUs with that pack
    updated_at: datetime = _ts()


class PostalCode(SQLModel, table=True):
    """Where a postal code is, so distance can be priced without the customer's coordinates."""

    __tablename__ = "postal_codes"
    postal_code: str = Field(primary_key=True, max_length=32)
    lat: float
    lon: float


class ServiceArea(SQLModel, table=True):
    """Store mapping: which nodes serve a postal code, by priority (1 = first)."""

    __tablename__ = "service_areas"
    postal_code: str = Field(primary_key=True, max_length=32)
    node_id: str = Field(primary_key=True, foreign_key="nodes.node_id", max_length=64, index=True)
    priority: int = 1


class Sku(SQLModel, table=True):
    __tablename__ = "skus"
    sku: str = Field(primary_key=True, max_length=64)
    name: str
    weight_kg: float = 0.5
    oversized: bool = False
    hazmat: bool = False
    digital: bool = False
    ship_alone: bool = False
    preorder_release_date: Optional[date] = None
    allowed_node_types: list[str] = _json([])
    category: Optional[str] = Field(default=None, max_length=64, index=True)
    # At or below this many units available the SKU shows as "low" (None: NODAL_LOW_STOCK_THRESHOLD).
    low_stock_threshold: Optional[int] = None
    pack_sizes: dict[str, int] = _json({})  # eaches in a case, a pallet: lines may be ordered in them
    updated_at: datetime = _ts()


class ChannelView(SQLModel, table=True):
    """How one sales channel sees the common pool: which nodes, and what it must leave for others."""

    __tablename__ = "channel_views"
    channel: str = Field(primary_key=True, max_length=64)
    node_types: list[str] = _json([])  # empty: every type
    exclude_nodes: list[str] = _json([])
    buffer_units: int = 0
    buffer_pct: float = 0.0
    # Its stock feed (availability.changed): {thresholds: [0, 5, 20], step: 25}; None: no feed.
    feed: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSONType, nullable=True))
    updated_at: datetime = _ts()


# ---------------------------------------------------------------- inventory
class InventoryPosition(SQLModel, table=True):
    """One SKU at one node. Keyed SKU first and kept with free space in each page (fillfactor): the rows
    of a SKU across the network stay together, and a reservation updates its row in place (HOT)."""

    __tablename__ = "inventory_positions"
    __table_args__ = {"postgresql_with": {"fillfactor": 85}}
    sku: str = Field(primary_key=True, foreign_key="skus.sku", max_length=64)
    node_id: str = Field(primary_key=True, foreign_key="nodes.node_id", max_length=64, index=True)
    on_hand: int = 0  # sellable units on the shelf; only these can be sold
    reserved: int = 0
    damaged: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    pending_inspection: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    # Effective safety stock; set from the override, or from the defaults when there is none.
    safety_stock: int = 0
    safety_stock_override: Optional[int] = None
    as_of: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    updated_at: datetime = _ts()
    # Set by a trigger on every write (inventory_change_seq): the availability index keeps, for each position, the
    # figures of the highest number it has seen, whatever order the announcements and its loads arrive in.
    change_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))


class IncomingSupply(SQLModel, table=True):
    """A purchase order or transfer on its way to a node: promises backorders, never sells as stock."""

    __tablename__ = "incoming_supply"
    supply_id: str = Field(primary_key=True, max_length=128)
    node_id: str = Field(foreign_key="nodes.node_id", max_length=64)
    sku: str = Field(foreign_key="skus.sku", max_length=64, index=True)
    qty: int
    eta: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = _ts()


class SupplyClaim(SQLModel, table=True):
    """Units of incoming supply promised to a waiting order line (backorder or preorder), first come first served.

    Supply is never sold as stock; claims only stop two orders being promised the same incoming unit.
    """

    __tablename__ = "supply_claims"
    order_id: str = Field(primary_key=True, max_length=128)
    line_id: str = Field(primary_key=True, max_length=64)
    supply_id: str = Field(sa_column=Column(String(128), ForeignKey("incoming_supply.supply_id", ondelete="CASCADE"),
                                            primary_key=True, index=True))
    sku: str = Field(max_length=64)
    qty: int
    created_at: datetime = _ts()


class RoutingRuleSet(SQLModel, table=True):
    """One version of the routing rules (routing/rules.py); the highest version is in force."""

    __tablename__ = "routing_rules"
    version: int = Field(primary_key=True)
    rules: dict = Field(sa_column=Column(JSONB, nullable=False))
    actor: str = Field(max_length=64)
    created_at: datetime = _ts()


class DemandForecast(SQLModel, table=True):
    """One version of the demand forecast: expected orders over ``horizon_days`` from ``as_of``.

    Routing prices the future cost of taking scarce stock from it (bid prices); the highest version is in force.
    """

    __tablename__ = "demand_forecasts"
    version: int = Field(primary_key=True)
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    horizon_days: int
    actor: str = Field(max_length=64)
    created_at: datetime = _ts()


class DemandForecastEntry(SQLModel, table=True):
    """Expected orders of one basket (SKUs, one unit each) to one postal code over the forecast's horizon."""

    __tablename__ = "demand_forecast_entries"
    version: int = Field(sa_column=Column(Integer, ForeignKey("demand_forecasts.version", ondelete="CASCADE"),
                                          primary_key=True))
    entry: int = Field(primary_key=True)
    postal_code: str = Field(max_length=32)
    skus: list[str] = Field(sa_column=Column(ARRAY(String(64)), nullable=False))
    expected: float


class BidPrice(SQLModel, table=True):
    """What one unit taken now at a node is expected to cost the forecast's later orders (its LP dual price)."""

    __tablename__ = "bid_prices"
    node_id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(primary_key=True, max_length=64)
    price: float
    forecast_version: int
    computed_at: datetime = _ts()


class CarrierClosure(SQLModel, table=True):
    """A day one carrier neither collects nor delivers, beyond its country's holidays (a storm, an embargo)."""

    __tablename__ = "carrier_closures"
    carrier: str = Field(primary_key=True, max_length=32)
    day: date = Field(primary_key=True)
    reason: str = Field(default="", max_length=200)
    updated_at: datetime = _ts()


class ProtectedStock(SQLModel, table=True):
    """Units of a position only one customer tier may buy (B2B key accounts, VIP): a nested protection level."""

    __tablename__ = "protected_stock"
    node_id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(primary_key=True, max_length=64)
    tier: str = Field(primary_key=True, max_length=32)
    qty: int


class SafetyStockDefault(SQLModel, table=True):
    """Safety stock for positions without their own: per node type and per SKU category (the larger wins)."""

    __tablename__ = "safety_stock_defaults"
    scope: str = Field(primary_key=True, max_length=16)  # node_type | category
    key: str = Field(primary_key=True, max_length=64)
    qty: int


class Reservation(SQLModel, table=True):
    """Stock held for one order line at one node: held → consumed (shipped) or released."""

    __tablename__ = "reservations"
    reservation_id: str = Field(primary_key=True, max_length=160)
    order_id: str = Field(index=True, max_length=64)
    fulfillment_id: str = Field(index=True, max_length=96)
    line_id: str = Field(max_length=64)
    node_id: str = Field(max_length=64)
    sku: str = Field(max_length=64)
    qty: int
    status: str = "held"
    capacity_day: date
    # Checkout holds expire; order reservations don't.
    expires_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True), index=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()

    __table_args__ = (Index("ix_reservations_node_day", "node_id", "capacity_day"),
                      Index("ix_reservations_node_created", "node_id", "created_at"))


class CheckoutHold(SQLModel, table=True):
    """Stock held for a shopper's cart until it becomes an order or expires."""

    __tablename__ = "checkout_holds"
    hold_id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(max_length=64)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    order_id: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime = _ts()


class InventoryLedger(SQLModel, table=True):
    """Append-only: every change of on-hand or reserved, with who, why and the event behind it."""

    __tablename__ = "inventory_ledger"
    id: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    node_id: str = Field(max_length=64)
    sku: str = Field(max_length=64)
    on_hand_delta: int = 0  # change of the disposition's bucket (on hand for sellable)
    reserved_delta: int = 0
    disposition: str = Field(default="sellable", sa_column=Column(
        String(24), nullable=False, server_default=text("'sellable'")))
    reason: str
    event_id: Optional[str] = Field(default=None, max_length=400, unique=True)
    order_id: Optional[str] = Field(default=None, max_length=64)
    actor: str = "system"
    at: datetime = _ts()

    __table_args__ = (Index("ix_inventory_ledger_node_sku", "node_id", "sku", "id"),)


# ---------------------------------------------------------------- orders (the read model)
class Order(SQLModel, table=True):
    __tablename__ = "orders"
    order_id: str = Field(primary_key=True, max_length=64)
    external_id: str = Field(max_length=128)
    channel: str = Field(max_length=64, index=True)
    customer_id: str = Field(max_length=128, index=True)
    customer_tier: Optional[str] = None
    customer_email: Optional[str] = None
    credit_terms: Optional[str] = Field(default=None, max_length=16)  # on account (net30): invoiced, credit-checked
    status: str = Field(default="received", index=True)
    currency: str = "USD"
    total: Decimal = _money()
    policy: dict[str, Any] = _json({})
    requested_delivery_date: Optional[date] = None
    promised_by: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # The first date the order was promised for: KPIs count "on time" against it, not against a later re-promise.
    first_promised_by: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    cancel_cause: Optional[str] = Field(default=None, max_length=32)  # a cancelled order's cause (activities/metrics)
    delivered_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    return_deadline: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # The order as it was placed (the workflow input), so an interrupted placement can be started again.
    intake: dict[str, Any] = Field(default_factory=dict, sa_column=Column(
        JSONType, nullable=False, server_default=text("'{}'::jsonb")))
    version: int = 0
    # Which attempt of the order's workflow wrote the row (workflows/order/mirror.py stamp): a workflow task that
    # Temporal ran again writes over what its discarded attempt wrote.
    stamp: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    at_risk: bool = Field(default=False, sa_column_kwargs={"server_default": "false"}, index=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # When a stock or supply change last woke this backordered order (a burst wakes it once).
    woken_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))

    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_orders_channel_external_id"),
        Index("ix_orders_created", "created_at", "order_id"),
        Index("ix_orders_customer_on_account", "customer_id", postgresql_where=text("credit_terms IS NOT NULL")),
    )


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    order_id: str = Field(primary_key=True, foreign_key="orders.order_id", max_length=64)
    line_id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(max_length=64)
    qty: int
    unit_price: Decimal = _money()
    status: str = "received"
    delivery: dict[str, Any] = _json({})
    cancelled_qty: int = 0
    shipped_qty: int = 0
    delivered_qty: int = 0
    returned_qty: int = 0
    promised_by: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    digital: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    uom: str = Field(default="each", max_length=16, sa_column_kwargs={"server_default": "each"})  # as ordered
    pack: int = Field(default=1, sa_column_kwargs={"server_default": "1"})  # eaches per uom (qty counts eaches)


class Fulfillment(SQLModel, table=True):
    __tablename__ = "fulfillments"
    fulfillment_id: str = Field(primary_key=True, max_length=96)
    order_id: str = Field(foreign_key="orders.order_id", max_length=64, index=True)
    node_id: str = Field(max_length=64)
    status: str = "released"
    lines: list[dict[str, Any]] = _json([])
    carrier: Optional[str] = None
    tracking: Optional[str] = None
    ship_by: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reason: Optional[str] = None
    version: int = 0
    # The partner scorecard's raw material.
    released_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    accepted_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    picked_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    shipped_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    requested_units: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    short_units: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    at_risk: Optional[str] = Field(default=None, max_length=300)  # the promise milestone it missed
    kind: str = Field(default="delivery", max_length=16,
                      sa_column_kwargs={"server_default": "delivery"})  # delivery|pickup|transfer
    method: Optional[str] = Field(default=None, max_length=32)
    promised_by: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # A pickup at the counter: ready since, held until, the customer outside since (curbside), collected.
    ready_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    hold_until: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    arrived_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    to_node_id: Optional[str] = Field(default=None, max_length=64)  # a transfer's destination store
    wave: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))  # released in this wave
    bay: Optional[str] = Field(default=None, max_length=32)
    arrival_note: Optional[str] = Field(default=None, max_length=200)
    delivered_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()

    __table_args__ = (Index("ix_fulfillments_node_status", "node_id", "status"),
                      Index("ix_fulfillments_tracking", "tracking", postgresql_where=text("tracking IS NOT NULL")),
                      Index("ix_fulfillments_to_node_status", "to_node_id", "status"),
                      Index("ix_fulfillments_node_wave", "node_id", "wave", postgresql_where=text("wave IS NOT NULL")))


class Return(SQLModel, table=True):
    __tablename__ = "returns"
    return_id: str = Field(primary_key=True, max_length=96)
    order_id: str = Field(foreign_key="orders.order_id", max_length=64, index=True)
    status: str = "requested"
    method: str = "ship_back"
    node_id: Optional[str] = None
    reason: str = ""
    lines: list[dict[str, Any]] = _json([])
    label: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSONType))
    refund_amount: Decimal = _money()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Payment(SQLModel, table=True):
    """One movement of money; the payment_id is the gateway idempotency key."""

    __tablename__ = "payments"
    payment_id: str = Field(primary_key=True, max_length=160)
    order_id: str = Field(max_length=64, index=True)
    kind: str  # authorization|capture|void|refund
    amount: Decimal = _money()
    currency: str = "USD"
    status: str = "succeeded"
    gateway_ref: str = ""
    fulfillment_id: Optional[str] = None
    return_id: Optional[str] = None
    at: datetime = _ts()


class TimelineEvent(SQLModel, table=True):
    __tablename__ = "timeline_events"
    id: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    order_id: str = Field(max_length=64)
    key: str = Field(max_length=160)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    event: str
    detail: dict[str, Any] = _json({})
    stamp: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))  # as Order.stamp

    __table_args__ = (
        UniqueConstraint("order_id", "key", name="uq_timeline_order_key"),
        Index("ix_timeline_order_at", "order_id", "at", "id"),
    )


# ---------------------------------------------------------------- access and external-system memory
class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    key_id: str = Field(primary_key=True, max_length=32)
    key_hash: str = Field(unique=True, max_length=128)
    role: str  # admin|support|client|partner
    channel: Optional[str] = None
    node_id: Optional[str] = None
    tier: Optional[str] = Field(default=None, max_length=32)  # client keys: the customer tier they buy as
    # Client keys: may approve their channel's orders awaiting approval (a B2B buyer's approver).
    approver: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    carrier: Optional[str] = Field(default=None, max_length=32)  # carrier keys: the carrier whose scans they send
    label: str = ""
    created_at: datetime = _ts()
    revoked_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AdapterCall(SQLModel, table=True):
    """What a simulated external system remembers per idempotency key, as a real gateway does."""

    __tablename__ = "adapter_calls"
    system: str = Field(primary_key=True, max_length=32)
    idempotency_key: str = Field(primary_key=True, max_length=200)
    response: dict[str, Any] = _json({})
    created_at: datetime = _ts()


class IdempotentRequest(SQLModel, table=True):
    """A POST sent with an Idempotency-Key, per API key: its fingerprint while it runs, then the response a
    replay gets back, written with the request's effect where it has one. Kept a day (api/idempotency.py)."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (Index("ix_idempotent_requests_created_at", "created_at"),)  # the daily purge
    key_hash: str = Field(primary_key=True, max_length=64)  # the caller's API key, hashed
    idempotency_key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)  # method, path, query and body, hashed
    attempt: Optional[str] = Field(default=None, max_length=32)  # the run holding the claim
    status: Optional[int] = None  # None: still running
    content_type: Optional[str] = Field(default=None, max_length=200)
    body: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _ts()
    completed_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class PayloadBlob(SQLModel, table=True):
    """A large Temporal payload (a 20,000-line order, its plan) kept out of the workflow's history: the history
    holds a reference to it (temporal external storage, nodal/payloads.py). Written once, read on replay, kept
    until Temporal no longer holds the workflow it belongs to."""

    __tablename__ = "payload_blobs"
    workflow_id: str = Field(primary_key=True, max_length=255)
    digest: str = Field(primary_key=True, max_length=64)  # SHA-256 of the payload as stored
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib-compressed serialized payload
    size: int  # bytes before compression
    created_at: datetime = _ts()


# ---------------------------------------------------------------- outbound events and what comes in from carriers
class Event(SQLModel, table=True):
    """One event of the catalogue (events/catalogue.py), written in the transaction of the change it describes: the
    outbox. ``id`` is the webhook-id receivers dedupe on; ``stream`` orders delivery (an order's events, in the order
    they were written)."""

    __tablename__ = "events"
    seq: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    id: str = Field(max_length=200, unique=True)
    type: str = Field(max_length=64)
    stream: str = Field(max_length=200)
    order_id: Optional[str] = Field(default=None, max_length=64)
    channel: Optional[str] = Field(default=None, max_length=64)
    node_id: Optional[str] = Field(default=None, max_length=64)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))  # when it happened
    data: dict[str, Any] = _json({})
    created_at: datetime = _ts()

    __table_args__ = (Index("ix_events_created_at", "created_at"), Index("ix_events_order", "order_id", "seq"))


class Webhook(SQLModel, table=True):
    """A subscription: events matching its patterns (and its channel or node) are POSTed to its url, signed."""

    __tablename__ = "webhooks"
    name: str = Field(primary_key=True, max_length=64)
    generation: str = Field(max_length=32)  # a new one per creation: its delivery workflow's id
    url: str = Field(max_length=2048)
    events: list[str] = Field(sa_column=Column(ARRAY(String(64)), nullable=False))
    channel: Optional[str] = Field(default=None, max_length=64)
    node_id: Optional[str] = Field(default=None, max_length=64)
    secret: str = Field(max_length=128)
    # After a rotation the previous secret signs too, until previous_until (receivers switch over meanwhile).
    previous_secret: Optional[str] = Field(default=None, max_length=128)
    previous_until: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    owner_key_id: str = Field(max_length=32)
    delivered: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    failed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    failed_attempts: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class WebhookDelivery(SQLModel, table=True):
    """One event owed to one subscription: pending (attempts and when the next is due), delivered or failed."""

    __tablename__ = "webhook_deliveries"
    id: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    webhook: str = Field(max_length=64)
    event_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    stream: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=16)  # pending|delivered|failed
    attempts: int = 0
    next_attempt_at: datetime = _ts()
    last_status_code: Optional[int] = None
    last_error: Optional[str] = Field(default=None, max_length=300)
    created_at: datetime = _ts()
    delivered_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(timezone=True)))

    __table_args__ = (
        UniqueConstraint("webhook", "event_seq", name="uq_webhook_deliveries_event"),
        # A stream's head: the pending delivery with the lowest event_seq.
        Index("ix_webhook_deliveries_pending", "webhook", "stream", "event_seq", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_listing", "webhook", "status", "id"),
        Index("ix_webhook_deliveries_delivered_at", "delivered_at", postgresql_where=text("delivered_at IS NOT NULL")),
    )


class StockChange(SQLModel, table=True):
    """A SKU whose stock changed (written by a trigger on inventory_positions, in the change's transaction) and
    not yet looked at by the channel feeds (events/feeds.py)."""

    __tablename__ = "stock_changes"
    id: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    sku: str = Field(max_length=64)
    at: datetime = _ts()


class ChannelAvailability(SQLModel, table=True):
    """What a channel's feed last published for a SKU; ``seq`` orders the changes a feed reader asks for."""

    __tablename__ = "channel_availability"
    channel: str = Field(primary_key=True, max_length=64)
    sku: str = Field(primary_key=True, max_length=64)
    available: int
    version: int = 1
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = _ts()

    __table_args__ = (Index("ix_channel_availability_seq", "channel", "seq"),)


class CarrierScan(SQLModel, table=True):
    """A tracking scan a carrier sent (POST /carriers/{carrier}/events): kept once, whatever order they come in."""

    __tablename__ = "carrier_scans"
    id: Optional[int] = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    carrier: str = Field(max_length=32)
    tracking: str = Field(max_length=64)
    event: str = Field(max_length=32)  # in_transit|out_for_delivery|delivered|exception|returned_to_sender
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    detail: dict[str, Any] = _json({})
    fulfillment_id: str = Field(max_length=96)
    order_id: str = Field(max_length=64)
    received_at: datetime = _ts()

    __table_args__ = (
        UniqueConstraint("carrier", "tracking", "event", "at", name="uq_carrier_scans"),
        Index("ix_carrier_scans_order", "order_id", "at"),
    )


class ServiceSecret(SQLModel, table=True):
    """A secret every process of the deployment shares (the tracking-link signing key), made on first use."""

    __tablename__ = "service_secrets"
    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=128)
    created_at: datetime = _ts()
