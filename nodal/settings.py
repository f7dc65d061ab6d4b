"""Runtime configuration: every knob is a ``NODAL_`` environment variable (see API.md)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Optional

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import BaseSettings, SettingsConfigDict

from nodal.durations import format_duration, parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NODAL_", extra="ignore")

    # Empty means the embedded defaults started by `nodal dev` (pgserver, temporal dev server).
    database_url: str = ""
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "nodal-orders"

    remorse_window: Duration = timedelta(minutes=30)
    accept_timeout: Duration = timedelta(hours=2)
    return_window: Duration = timedelta(days=30)
    # How long a store holds a pickup that is ready (a node's calendar may say otherwise), and how long before
    # the end the customer is reminded.
    pickup_hold: Duration = timedelta(days=7)
    pickup_reminder: Duration = timedelta(days=1)
    # An order awaiting approval (policy.approval_required) is cancelled, its stock released, after this.
    approval_window: Duration = timedelta(days=3)
    # How long a checkout hold keeps stock, and how often expired holds are swept.
    hold_ttl: Duration = timedelta(minutes=15)
    hold_sweep_every: Duration = timedelta(minutes=1)

    admin_key: str = ""
    # How long POST /orders waits for the promise before answering with status received.
    place_timeout_s: float = 20.0
    home: Path = Path(".nodal")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    # Workflow tasks a worker process runs at once. Python runs one at a time (the GIL): more slots only stretch
    # every task in a burst (twenty 1,000-line milestones at once) towards the 2 s deadlock limit; the others wait
    # at the server instead. Scale out with worker processes.
    workflow_task_slots: int = 4
    ui_port: int = 8233
    # Where staff open the Temporal UI (the control tower links each order's workflow there); default: the dev
    # server's UI on ui_port.
    temporal_ui_url: str = ""
    log_level: str = "INFO"
    log_json: Optional[bool] = None  # None: JSON unless stderr is a terminal

    # Temporal payloads (inputs, activity arguments and results, Updates) are AES-GCM encrypted under this secret
    # when set; earlier secrets (comma-separated) still decrypt histories written under them.
    encryption_key: str = ""
    encryption_previous_keys: str = ""
    # Only while orders started before encryption was turned on are still running: their plaintext payloads.
    encryption_accept_plaintext: bool = False
    # The codec endpoint (POST /codec/decode, /codec/encode) lets the Temporal UI show encrypted payloads:
    # browsers at these origins may call it, with a support or admin key unless the key requirement is off
    # (only for a UI on a private network that cannot send one).
    codec_cors_origins: str = "http://localhost:8233,http://127.0.0.1:8233"
    codec_requires_key: bool = True

    # Simulated external systems (carrier, payment gateway, notifications).
    adapter_latency_ms: int = 20
    adapter_failure_rate: float = 0.0
    # Share of calls that time out after adapter_timeout_ms (half of them done by the system all the same).
    adapter_timeout_rate: float = 0.0
    adapter_timeout_ms: int = 2000
    payment_decline_rate: float = 0.0
    # GET /availability says "low" at or below this many units (a SKU may set its own).
    low_stock_threshold: int = 5
    # A valid API key is remembered this long per API process (a revocation through this process applies at
    # once, through another within this time); 0 looks every request up.
    auth_cache_seconds: float = 5.0
    # Per API key and API process: requests per second sustained and at once (429 with Retry-After past it;
    # 0 turns the limit off).
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # Per client address, before authentication (with or without a key); a request whose key fails costs
    # rate_limit_bad_key_cost of it. Generous: many customers may share an address (a storefront's servers).
    rate_limit_per_address: float = 1000.0
    rate_limit_address_burst: int = 2000
    rate_limit_bad_key_cost: float = 20.0
    # Request bodies over this are refused with 413 (a 5,000-line B2B order is about 1.5 MB).
    max_body_bytes: int = 8 * 1024 * 1024
    # A POST's Idempotency-Key is remembered this long; a replay within it gets the first response back.
    idempotency_hours: float = 24.0
    # Time the router may spend searching node sets for one order before it keeps the best plan found
    # (single nodes are always priced; the decision records whether the search was exhaustive).
    routing_budget_ms: float = 200.0
    # POST /promise quotes pickup and curbside at the nearest stores offering them within this radius.
    pickup_radius_km: float = 50.0
    pickup_options: int = 3
    # Quotes reuse what they read of the slow-changing network (nodes, service areas, postal codes, SKUs,
    # channel views, routing rules, bid prices, carrier closures) this long; stock and capacity are read live.
    # This process's network edits apply at once, other processes' within it (without a current availability index
    # feed, below). 0: read everything per quote.
    quote_cache_seconds: float = 30.0
    # The same memo while this process's availability index follows PostgreSQL's announcements (its self-ping under
    # 2 s old): every network edit is announced and clears it at once in every process, so its age limit is only a
    # backstop. Expiring it every 30 s rebuilt every destination's quote tables at once, the slowest 1% of quotes.
    network_memo_seconds: float = 600.0
    # Quotes, availability answers and checkout holds read stock from this process's availability index (kept
    # current by PostgreSQL's announcements) instead of the database; off: they read it live.
    availability_index: bool = True
    # How often scarce stock is re-priced from the demand forecast (PUT /forecast also re-prices at once).
    bid_price_every: Duration = timedelta(minutes=15)
    # Re-sourcing attempts before a line is declared backordered.
    max_reroutes: int = 5
    # A node gets at most this many lines per fulfillment; an allocation with more becomes several fulfillments.
    max_fulfillment_lines: int = 1000
    # POST /orders refuses (422) an order with more lines than this.
    max_order_lines: int = 20_000
    # A card authorization holds this long at the gateway; an order that waits longer authorizes again before
    # work goes to a node, and after a decline waits payment_hold for the payment before cancelling.
    authorization_validity: Duration = timedelta(days=7)
    payment_hold: Duration = timedelta(days=3)
    # A long-lived order continues as new once its history holds this many events.
    order_history_limit: int = 10_000

    # Outbound events (webhooks): a delivery is retried with exponential backoff (from webhook_backoff, doubling up
    # to webhook_backoff_cap) for webhook_retry_for, then marked failed; each POST waits webhook_timeout; a
    # subscription has at most webhook_concurrency POSTs in flight (one per order at a time: in order per order).
    webhook_retry_for: Duration = timedelta(days=3)
    webhook_timeout: Duration = timedelta(seconds=10)
    webhook_backoff: Duration = timedelta(seconds=1)
    webhook_backoff_cap: Duration = timedelta(hours=1)
    webhook_concurrency: int = 32
    # Client and partner keys may point a webhook at loopback or private addresses (admins always may).
    webhook_private_urls: bool = False
    # Events and delivered deliveries are kept this long (POST /webhooks/{name}/replay reaches this far back).
    event_retention: Duration = timedelta(days=7)
    # The delivery and feed processes are long-running activities: a worker that dies is noticed (and another takes
    # over) after this long without a heartbeat.
    event_heartbeat: Duration = timedelta(seconds=15)
    # Channel feeds gather a burst of stock changes this long before they publish.
    feed_debounce: Duration = timedelta(seconds=1)
    # A worker's Prometheus endpoint (e.g. 0.0.0.0:9464): the Temporal SDK's metrics and the business ones its
    # activities record (activities/metrics.py). Empty: none.
    worker_metrics_address: str = ""
    # GET /track/{order_id}: lookups per minute per client address (and per order, against guessing its email).
    track_per_minute: float = 30.0

    @property
    def embedded_pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def temporal_db_file(self) -> Path:
        return self.home / "temporal.db"


@lru_cache
def get_settings() -> Settings:
    return Settings()
