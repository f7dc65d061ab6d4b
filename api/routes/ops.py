"""Operations: health and Prometheus metrics."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import text

from events.delivery import PENDING_SQL
from routing.store import load_scorecards

import api.answers as A
from api.auth import STAFF, Principal

router = APIRouter(tags=["operations"])

REGISTRY = CollectorRegistry()
REQUESTS = Counter("nodal_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("nodal_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)


class MetricsMiddleware:
    """Request count and latency per route template (plain ASGI: no per-request task or body copying)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()


@router.get("/livez", summary="Liveness of this process alone (no dependencies)", response_model=A.Live,
            responses=A.PUBLIC)
async def livez() -> dict:
    return {"status": "ok"}


@router.get("/healthz", summary="Liveness and dependencies", response_model=A.Health,
            responses={503: {"model": A.Health, "description": "A dependency is down (the answer says which)"}, **A.PUBLIC})
async def healthz(request: Request, response: Response) -> dict:
    checks = {}
    try:
        async with request.app.state.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:  # report, don't crash: this is the health endpoint
        checks["database"] = f"error: {type(e).__name__}"
    try:
        await request.app.state.temporal.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as e:
        checks["temporal"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ok else 503
    return {"status": "ok" if ok else "degraded", **checks}


def _rate(num: int, den: int):
    return round(num / den, 4) if den else None


_KPIS = text("""
WITH o AS (
  SELECT o.*, COALESCE(o.first_promised_by, o.promised_by) AS first_promise,
         -- delivered: the order's whole delivery is done (one parcel of an order still in transit is not)
         CASE WHEN o.status IN ('delivered', 'partially_returned', 'returned') THEN o.delivered_at END AS done_at FROM orders o
  WHERE (CAST(:c AS varchar) IS NULL OR o.channel = :c)
    AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f) AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)
), complete AS (  -- delivered whole: no live unit undelivered
  SELECT o.order_id FROM o WHERE o.done_at IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM order_lines l WHERE l.order_id = o.order_id AND l.delivered_qty < l.qty - l.cancelled_qty)
), released AS (
  SELECT f.order_id, MIN(f.released_at) AS at,
         COUNT(*) FILTER (WHERE f.kind <> 'transfer'
                          AND f.status NOT IN ('rejected', 'timed_out', 'cancelled', 'expired', 'exception')) AS kept
  FROM fulfillments f JOIN o USING (order_id) GROUP BY f.order_id
)
SELECT COUNT(*) AS orders,
  COUNT(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
  COUNT(*) FILTER (WHERE o.done_at IS NOT NULL) AS delivered,
  COUNT(*) FILTER (WHERE o.done_at <= o.first_promise) AS on_time,
  COUNT(*) FILTER (WHERE o.done_at <= o.promised_by) AS on_time_latest,
  COUNT(*) FILTER (WHERE o.done_at <= o.first_promise AND o.order_id IN (SELECT order_id FROM complete))
    AS complete_on_time,
  COUNT(*) FILTER (WHERE r.kept > 1) AS split, COUNT(r.order_id) AS released,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM r.at - o.created_at)) AS to_release_s,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM o.first_promise - o.done_at))
    FILTER (WHERE o.done_at IS NOT NULL AND o.first_promise IS NOT NULL) AS slack_s
FROM o LEFT JOIN released r USING (order_id)
""")
_CAUSES = text("""
SELECT COALESCE(o.cancel_cause, 'requested') AS cause, COUNT(*) AS n FROM orders o WHERE o.status = 'cancelled'
  AND (CAST(:c AS varchar) IS NULL OR o.channel = :c)
  AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f) AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)
GROUP BY 1 ORDER BY 1
""")
_PICK_TO_SHIP = text("""
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM f.shipped_at - f.picked_at)) AS s
FROM fulfillments f JOIN orders o USING (order_id)
WHERE f.shipped_at IS NOT NULL AND f.picked_at IS NOT NULL AND (CAST(:c AS varchar) IS NULL OR o.channel = :c)
  AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f) AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)
""")
# The landed cost the router priced for each order's first sourcing (what the network spent to serve it).
_COST = text("""
SELECT AVG(c) FROM (
  SELECT t.order_id, SUM(CAST(t.detail->>'total_cost' AS numeric)) AS c FROM timeline_events t JOIN orders o USING (order_id)
  WHERE t.event = 'routing_decision' AND t.detail->>'feasible' = 'true' AND t.detail->>'attempt' = '1'
    AND t.detail->>'reason' = 'initial' AND (CAST(:c AS varchar) IS NULL OR o.channel = :c)
    AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f) AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)
  GROUP BY t.order_id) x
""")
_SERIES = text("""
WITH o AS (
  SELECT o.*, COALESCE(o.first_promised_by, o.promised_by) AS first_promise,
         -- delivered: the order's whole delivery is done (one parcel of an order still in transit is not)
         CASE WHEN o.status IN ('delivered', 'partially_returned', 'returned') THEN o.delivered_at END AS done_at,
         CAST(date_trunc('day', o.created_at AT TIME ZONE 'UTC') AS date) AS day FROM orders o
  WHERE (CAST(:c AS varchar) IS NULL OR o.channel = :c)
    AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f) AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)
), r AS (
  SELECT f.order_id, MIN(f.released_at) AS at,
         COUNT(*) FILTER (WHERE f.kind <> 'transfer'
                          AND f.status NOT IN ('rejected', 'timed_out', 'cancelled', 'expired', 'exception')) AS kept,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM f.shipped_at - f.picked_at))
           FILTER (WHERE f.shipped_at IS NOT NULL AND f.picked_at IS NOT NULL) AS pick_to_ship
  FROM fulfillments f JOIN o USING (order_id) GROUP BY f.order_id
), cost AS (
  SELECT t.order_id, SUM(CAST(t.detail->>'total_cost' AS numeric)) AS c FROM timeline_events t JOIN o USING (order_id)
  WHERE t.event = 'routing_decision' AND t.detail->>'feasible' = 'true' AND t.detail->>'attempt' = '1'
    AND t.detail->>'reason' = 'initial' GROUP BY t.order_id
)
SELECT o.day, COUNT(*) AS orders,
  COUNT(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
  COUNT(*) FILTER (WHERE o.done_at IS NOT NULL) AS delivered,
  COUNT(*) FILTER (WHERE o.done_at <= o.first_promise) AS on_time,
  COUNT(*) FILTER (WHERE o.done_at <= o.first_promise AND NOT EXISTS (
    SELECT 1 FROM order_lines l WHERE l.order_id = o.order_id AND l.delivered_qty < l.qty - l.cancelled_qty))
    AS complete_on_time,
  COUNT(*) FILTER (WHERE r.kept > 1) AS split, COUNT(r.order_id) AS released,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM r.at - o.created_at)) AS to_release_s,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY r.pick_to_ship) AS pick_to_ship_s,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM o.first_promise - o.done_at))
    FILTER (WHERE o.done_at IS NOT NULL AND o.first_promise IS NOT NULL) AS slack_s,
  AVG(cost.c) AS cost
FROM o LEFT JOIN r USING (order_id) LEFT JOIN cost USING (order_id)
GROUP BY 1 ORDER BY 1
""")



@router.get("/kpis", summary="Fulfillment KPIs from the read model: a date range, a channel",
            description="Orders placed from `from` to `to` (days, UTC, both included; default all). The order "
                        "fulfillment rate counts orders delivered complete and on time against their FIRST promise "
                        "(a later re-promise does not make a late order on time; `on_time_rate_latest_promise` shows "
                        "the difference), of those delivered or cancelled.",
            response_model=A.Kpis, responses=A.errors(401, 403, 422, 429))
async def kpis(request: Request, channel: Optional[str] = None,
               since: Optional[date] = Query(None, alias="from", description="first day (UTC)"),
               until: Optional[date] = Query(None, alias="to", description="last day (UTC), included"),
               _: Principal = Depends(STAFF)) -> dict:
    if since and until and until < since:
        raise HTTPException(422, "`to` is before `from`")
    async with request.app.state.db.engine.connect() as conn:
        return await kpi_report(conn, channel, since, until)


async def kpi_report(conn, channel: Optional[str], since: Optional[date], until: Optional[date]) -> dict:
    """The KPIs of orders placed from ``since`` to ``until`` (days, UTC, both included) on a channel (or all)."""
    args = {"c": channel, "f": _day(since), "t": _day(until + timedelta(days=1)) if until else None}
    o = (await conn.execute(_KPIS, args)).one()
    causes = {r.cause: r.n for r in await conn.execute(_CAUSES, args)}
    pick_to_ship = (await conn.execute(_PICK_TO_SHIP, args)).scalar()
    cost = (await conn.execute(_COST, args)).scalar()
    series = (await conn.execute(_SERIES, args)).all()
    cards = await load_scorecards(conn, channel=channel, since=args["f"], until=args["t"])
    counter = await store_kpis(conn, channel, args["f"], args["t"])
    return {
        "channel": channel, "from": since.isoformat() if since else None, "to": until.isoformat() if until else None,
        "orders": o.orders,
        "order_fulfillment_rate": _rate(o.complete_on_time, o.delivered + o.cancelled),
        "cancellation_rate": _rate(o.cancelled, o.orders),
        "cancellation_by_cause": {k: _rate(v, o.orders) for k, v in causes.items()},
        "split_rate": _rate(o.split, o.released),
        "on_time_rate": _rate(o.on_time, o.delivered),
        "on_time_rate_latest_promise": _rate(o.on_time_latest, o.delivered),
        "median_promise_slack_days": None if o.slack_s is None else round(float(o.slack_s) / 86400, 2),
        "median_minutes_to_release": None if o.to_release_s is None else round(float(o.to_release_s) / 60, 1),
        "median_hours_pick_to_ship": None if pick_to_ship is None else round(float(pick_to_ship) / 3600, 2),
        "cost_per_order": None if cost is None else f"{Decimal(cost).quantize(Decimal('0.01'))}",
        # The partner scorecards of the nodes that served these orders.
        "nodes": [{"node_id": node_id, "acceptance_rate": c.acceptance_rate, "fill_rate": c.fill_rate,
                   "on_time_ship_rate": c.on_time_ship_rate} for node_id, c in cards.items()],
        "pickup": counter,
        "series": [{"day": r.day.isoformat(), "orders": r.orders, "cancelled": r.cancelled, "delivered": r.delivered,
                    "on_time": r.on_time, "complete_on_time": r.complete_on_time,
                    "order_fulfillment_rate": _rate(r.complete_on_time, r.delivered + r.cancelled),
                    "cancellation_rate": _rate(r.cancelled, r.orders), "split_rate": _rate(r.split, r.released),
                    "median_promise_slack_days": _scaled(r.slack_s, 86400),
                    "median_minutes_to_release": _scaled(r.to_release_s, 60),
                    "median_hours_pick_to_ship": _scaled(r.pick_to_ship_s, 3600),
                    "cost_per_order": None if r.cost is None else f"{Decimal(r.cost).quantize(Decimal('0.01'))}"}
                   for r in series],
    }


def _scaled(seconds, unit: float) -> Optional[float]:
    return None if seconds is None else round(float(seconds) / unit, 2)


def _day(d: Optional[date]) -> Optional[datetime]:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc) if d else None


async def store_kpis(conn, channel: Optional[str] = None, since: Optional[datetime] = None,
                     until: Optional[datetime] = None) -> dict:
    """Pickups at the counter: how long a store takes to make one ready, how long a customer who checked in waits
    for it, and how many are never collected (of orders placed from ``since`` until before ``until``)."""
    where = "AND o.channel = :c" if channel else ""
    where += (" AND (CAST(:f AS timestamptz) IS NULL OR o.created_at >= :f)"
              " AND (CAST(:t AS timestamptz) IS NULL OR o.created_at < :t)")
    r = (await conn.execute(text(f"""
        SELECT COUNT(*) AS pickups,
          COUNT(*) FILTER (WHERE f.status = 'collected') AS collected,
          COUNT(*) FILTER (WHERE f.status = 'expired') AS expired,
          percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM f.ready_at - f.released_at))
            FILTER (WHERE f.ready_at IS NOT NULL) AS ready_s,
          percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM f.delivered_at - f.arrived_at))
            FILTER (WHERE f.status = 'collected' AND f.arrived_at IS NOT NULL) AS wait_s,
          COUNT(*) FILTER (WHERE f.status = 'collected' AND f.arrived_at IS NOT NULL) AS arrivals
        FROM fulfillments f JOIN orders o USING (order_id) WHERE f.kind = 'pickup' {where}"""),
        {"c": channel, "f": since, "t": until})).one()
    minutes = lambda s: None if s is None else round(float(s) / 60, 1)  # noqa: E731
    return {"pickups": r.pickups, "collected": r.collected, "expired_rate": _rate(r.expired, r.collected + r.expired),
            "median_ready_minutes": minutes(r.ready_s), "curbside_arrivals": r.arrivals,
            "median_arrival_to_collection_minutes": minutes(r.wait_s)}


class _Families:
    """Metric families read from the database for one scrape (the delivery processes run in the workers: their
    record is the database, whichever process answers)."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


_WEBHOOKS = text(f"""
SELECT w.name, w.delivered, w.failed, w.failed_attempts, COALESCE(p.pending, 0) AS pending,
       EXTRACT(EPOCH FROM now() - p.oldest) AS oldest, l.p50, l.p99, COALESCE(l.n, 0) AS recent
FROM webhooks w
{PENDING_SQL}
LEFT JOIN LATERAL (
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM d.delivered_at - e.created_at)) AS p50,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM d.delivered_at - e.created_at)) AS p99,
         COUNT(*) AS n
  FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq
  WHERE d.webhook = w.name AND d.delivered_at > now() - interval '5 minutes') l ON TRUE
ORDER BY w.name
""")


async def event_metrics(conn) -> list:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    delivered = CounterMetricFamily("nodal_webhook_deliveries", "Events delivered (2xx) or given up (failed) per "
                                    "subscription", labels=["webhook", "outcome"])
    attempts = CounterMetricFamily("nodal_webhook_failed_attempts", "POSTs that got no 2xx (each retried)",
                                   labels=["webhook"])
    pending = GaugeMetricFamily("nodal_webhook_pending", "Events not yet delivered", labels=["webhook"])
    oldest = GaugeMetricFamily("nodal_webhook_oldest_pending_seconds", "Age of the oldest undelivered event",
                               labels=["webhook"])
    latency = GaugeMetricFamily("nodal_webhook_delivery_latency_seconds", "From the event's write to its 2xx, over "
                                "the last 5 minutes", labels=["webhook", "quantile"])
    for r in await conn.execute(_WEBHOOKS):
        delivered.add_metric([r.name, "delivered"], r.delivered)
        delivered.add_metric([r.name, "failed"], r.failed)
        attempts.add_metric([r.name], r.failed_attempts)
        pending.add_metric([r.name], r.pending)
        oldest.add_metric([r.name], float(r.oldest or 0))
        if r.recent:
            latency.add_metric([r.name, "0.5"], float(r.p50))
            latency.add_metric([r.name, "0.99"], float(r.p99))
    return [delivered, attempts, pending, oldest, latency]


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}, **A.PUBLIC})
async def metrics(request: Request) -> Response:
    body = generate_latest(REGISTRY)
    try:
        async with request.app.state.db.engine.connect() as conn:
            families = await event_metrics(conn)
    except Exception:  # the process's own metrics still answer when the database does not
        families = []
    scrape = CollectorRegistry()
    scrape.register(_Families(families))
    return Response(body + generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)
