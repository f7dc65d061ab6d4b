"""The control tower: web pages for support and operations staff under /console.

Server-rendered (Jinja2) from the read model; the one-click actions are htmx requests to the public API itself
(reorchestrate, cancel, enable a node), so the page can do nothing a staff key cannot do with curl. Charts are
Chart.js. Every asset is served from the package: the pages work with no network.

Signing in takes a staff key (admin or support) and keeps it in an HttpOnly, SameSite=Strict cookie. The cookie
stands in for the Authorization header only on the console's own pages and on requests htmx sends (they carry
HX-Request, which a form on another site cannot send without a CORS preflight this API never allows).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import text

from api.auth import Role, principal
from api.routes.network import _node_view
from api.routes.ops import kpi_report
from api.views import order_view
from routing.sourcing import load_rules
from routing.store import load_scorecards

HERE = Path(__file__).parent
COOKIE = "nodal_console"
SESSION_HOURS = 12
templates = Jinja2Templates(directory=HERE / "templates" / "console")
router = APIRouter(prefix="/console", include_in_schema=False)
static = StaticFiles(directory=HERE / "static" / "console")

# What an open order may take in each status before the tower says it is stuck (its remorse window and
# acceptance timeout come from the settings; the rest are a working day or a week).
TERMINAL = ("delivered", "cancelled", "rejected", "returned", "partially_returned")


def norms(settings) -> dict[str, timedelta]:
    return {"received": timedelta(minutes=15), "awaiting_approval": settings.approval_window,
            "awaiting_release": settings.remorse_window + timedelta(hours=1),
            "released": settings.accept_timeout + timedelta(days=1), "partially_shipped": timedelta(days=7),
            "shipped": timedelta(days=7), "ready_for_pickup": settings.pickup_hold, "backordered": timedelta(days=14)}


class ConsoleSession:
    """Plain ASGI, outside the request guard: the console's cookie becomes the bearer key the rest of the API
    checks, on the console's pages and on htmx's requests only."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if b"authorization" not in headers and b"cookie" in headers:
                page = scope["path"].startswith("/console") and scope["method"] in ("GET", "HEAD")
                if page or headers.get(b"hx-request") == b"true":
                    key = _cookie(headers[b"cookie"].decode("latin-1"))
                    if key:
                        scope = {**scope, "headers": [*scope["headers"], (b"authorization", f"Bearer {key}".encode())]}
        await self.app(scope, receive, send)


def _cookie(header: str) -> Optional[str]:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


async def _holder(request: Request, key: str):
    """The staff member a key belongs to, or None and why not (unknown or revoked, or not staff's)."""
    try:
        who = await principal(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key))
    except HTTPException:
        return None, "This key is unknown or revoked."
    if who.role not in (Role.admin, Role.support):
        return None, "This key is not a staff key: the control tower takes an admin or support key."
    return who, None


async def _staff(request: Request):
    """The signed-in staff member, or None (no cookie, a revoked key, a key that is not staff's)."""
    creds = request.headers.get("authorization", "")
    if not creds.lower().startswith("bearer "):
        return None
    return (await _holder(request, creds[7:].strip()))[0]


def _page(request: Request, name: str, who, **context) -> HTMLResponse:
    settings = request.app.state.settings
    return templates.TemplateResponse(request, name, {
        "who": who, "page": name.removesuffix(".html"), "temporal_ui": temporal_ui(settings),
        "namespace": settings.temporal_namespace, **context})


def temporal_ui(settings) -> str:
    return (settings.temporal_ui_url or f"http://localhost:{settings.ui_port}").rstrip("/")


async def _signed_in(request: Request):
    who = await _staff(request)
    if who is None:
        raise _LoginFirst(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return who


class _LoginFirst(Exception):
    def __init__(self, then: str):
        self.then = then


def login_redirect(request: Request, exc: _LoginFirst) -> Response:
    return RedirectResponse(f"/console/login?then={quote(exc.then)}", status_code=303)


# ---------------------------------------------------------------- signing in
@router.get("/login")
async def login_form(request: Request, then: str = "/console") -> HTMLResponse:
    return _page(request, "login.html", None, then=_local(then), problem=None)


@router.post("/login")
async def login(request: Request, key: str = Form(..., max_length=200), then: str = Form("/console")) -> Response:
    _, problem = await _holder(request, key.strip())
    if problem:
        response = _page(request, "login.html", None, then=_local(then), problem=problem)
        response.status_code = 401
        return response
    response = RedirectResponse(_local(then), status_code=303)
    response.set_cookie(COOKIE, key.strip(), max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _local(then: str) -> str:
    """Only a path of this console: never a redirect to somewhere else."""
    return then if then.startswith("/console") and "//" not in then and "\\" not in then else "/console"


# ---------------------------------------------------------------- orders needing attention
_ATTENTION = text("""
SELECT o.order_id, o.external_id, o.channel, o.status, o.promised_by, o.first_promised_by, o.created_at,
       o.updated_at, o.at_risk, o.total, o.currency,
       EXTRACT(EPOCH FROM now() - o.updated_at) AS idle_s,
       b.detail->>'reason' AS backorder_reason, h.event AS hold_event, h.detail->>'until' AS hold_until,
       (SELECT json_agg(json_build_object('fulfillment_id', f.fulfillment_id, 'node_id', f.node_id,
                                          'status', f.status, 'at_risk', f.at_risk, 'ship_by', f.ship_by)
                        ORDER BY f.created_at, f.fulfillment_id)
        FROM fulfillments f WHERE f.order_id = o.order_id
          AND f.status IN ('released', 'accepted', 'picked', 'packed', 'ready_for_pickup', 'in_transit',
                           'received_at_store')) AS open_fulfillments
FROM orders o
LEFT JOIN LATERAL (SELECT detail FROM timeline_events t WHERE t.order_id = o.order_id AND t.event = 'backordered'
                   ORDER BY t.at DESC, t.id DESC LIMIT 1) b ON o.status = 'backordered'
LEFT JOIN LATERAL (SELECT event, detail FROM timeline_events t WHERE t.order_id = o.order_id
                   AND t.event IN ('payment_hold', 'payment_hold_released') ORDER BY t.at DESC, t.id DESC LIMIT 1) h
  ON TRUE
WHERE o.status NOT IN ('delivered', 'cancelled', 'rejected', 'returned', 'partially_returned')
  AND (CAST(:channel AS varchar) IS NULL OR o.channel = :channel)
  AND (o.at_risk OR o.status = 'backordered' OR now() - o.updated_at > CAST(:shortest AS interval)
       OR EXISTS (SELECT 1 FROM timeline_events t WHERE t.order_id = o.order_id AND t.event = 'payment_hold'))
ORDER BY o.promised_by NULLS LAST, o.created_at
LIMIT :limit
""")


async def attention(conn, settings, channel: Optional[str] = None, limit: int = 200) -> list[dict[str, Any]]:
    """Open orders support should look at, each with why: at risk of missing its promise, stuck in its status
    longer than the norm, waiting for support after the reroute limit, on a payment hold."""
    norm = norms(settings)
    out = []
    for r in await conn.execute(_ATTENTION, {"channel": channel, "limit": limit * 4,
                                             "shortest": f"{int(min(norm.values()).total_seconds())} seconds"}):
        reasons = []
        if r.at_risk:
            late = [f for f in (r.open_fulfillments or []) if f.get("at_risk")]
            reasons.append(("at_risk", "at risk: " + ("; ".join(f"{f['fulfillment_id']} {f['at_risk']}" for f in late)
                                                     if late else "past a promise milestone")))
        if r.hold_event == "payment_hold":
            reasons.append(("payment_hold", f"payment on hold until {_when(r.hold_until)}"))
        if r.status == "backordered" and (r.backorder_reason or "").startswith("reroute limit"):
            reasons.append(("support", "waiting for support: " + r.backorder_reason))
        limit_s = norm.get(r.status)
        if limit_s is not None and r.idle_s > limit_s.total_seconds():
            reasons.append(("stuck", f"{r.status} for {_span(r.idle_s)} (norm {_span(limit_s.total_seconds())})"))
        if reasons:
            out.append({**r._mapping, "reasons": reasons, "open_fulfillments": r.open_fulfillments or []})
    return out[:limit]


def _when(value: Any) -> str:
    if not value:
        return "—"
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{max(seconds // 60, 1)} min"


templates.env.filters["when"] = _when
templates.env.filters["span"] = _span
templates.env.filters["num"] = lambda v, unit="": "—" if v is None else f"{v} {unit}".strip()
templates.env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
@router.get("/attention", response_class=HTMLResponse)
async def attention_page(request: Request, channel: Optional[str] = None) -> HTMLResponse:
    who = await _signed_in(request)
    async with request.app.state.db.engine.connect() as conn:
        items = await attention(conn, request.app.state.settings, channel or None)
        nodes = [r.node_id for r in await conn.execute(text("SELECT node_id FROM nodes WHERE enabled ORDER BY 1"))]
        channels = await _channels(conn)
    return _page(request, "attention.html", who, items=items, nodes=nodes, channel=channel or "", channels=channels)


async def _channels(conn) -> list[str]:
    return [r.channel for r in await conn.execute(text("SELECT DISTINCT channel FROM orders ORDER BY 1 LIMIT 100"))]


# ---------------------------------------------------------------- the network
_BACKLOG = text("""
SELECT node_id, COUNT(*) FILTER (WHERE status IN ('released', 'accepted', 'picked', 'packed')) AS backlog,
       COUNT(*) FILTER (WHERE status = 'released') AS to_accept
FROM fulfillments WHERE status IN ('released', 'accepted', 'picked', 'packed') GROUP BY node_id
""")


@router.get("/network", response_class=HTMLResponse)
async def network_page(request: Request, since: Optional[date] = Query(None, alias="from"),
                       until: Optional[date] = Query(None, alias="to")) -> HTMLResponse:
    who = await _signed_in(request)
    since, until = _range(since, until, days=7)
    async with request.app.state.db.engine.connect() as conn:
        cards = await load_scorecards(conn, since=_midnight(since), until=_midnight(until + timedelta(days=1)))
        _, rules = await load_rules(conn)
        ids = [r.node_id for r in await conn.execute(text("SELECT node_id FROM nodes ORDER BY node_id"))]
        nodes = [await _node_view(conn, i, cards, rules) for i in ids]
        backlog = {r.node_id: r for r in await conn.execute(_BACKLOG)}
    for n in nodes:
        cap = n["capacity"]
        limit, used = (cap["units_per_day"], cap["used_today"]) if cap["units_per_day"] else \
            (cap["orders_per_day"], cap["orders_today"])
        n["load"] = None if not limit else round(used / limit, 3)
        n["load_text"] = f"{used} / {limit}" if limit else f"{cap['used_today']} units (no daily limit)"
        b = backlog.get(n["node_id"])
        n["backlog"], n["to_accept"] = (b.backlog, b.to_accept) if b else (0, 0)
    points = [{"x": n["lon"], "y": n["lat"], "id": n["node_id"], "type": n["type"], "backlog": n["backlog"],
               "load": n["load"], "enabled": n["enabled"]} for n in nodes if n["lat"] is not None]
    return _page(request, "network.html", who, nodes=nodes, points=json.dumps(points), since=since, until=until)


def _range(since: Optional[date], until: Optional[date], days: int) -> tuple[date, date]:
    until = until or datetime.now(timezone.utc).date()
    since = since or until - timedelta(days=days - 1)
    if until < since:
        raise HTTPException(422, "`to` is before `from`")
    return since, until


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


# ---------------------------------------------------------------- KPIs
@router.get("/kpis", response_class=HTMLResponse)
async def kpis_page(request: Request, since: Optional[date] = Query(None, alias="from"),
                    until: Optional[date] = Query(None, alias="to"), channel: Optional[str] = None) -> HTMLResponse:
    who = await _signed_in(request)
    since, until = _range(since, until, days=14)
    async with request.app.state.db.engine.connect() as conn:
        report = await kpi_report(conn, channel or None, since, until)
        channels = await _channels(conn)
    return _page(request, "kpis.html", who, k=report, series=json.dumps(report["series"]), since=since, until=until,
                 channel=channel or "", channels=channels)


# ---------------------------------------------------------------- one order's life
@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(request: Request, order_id: str) -> HTMLResponse:
    who = await _signed_in(request)
    async with request.app.state.db.engine.connect() as conn:
        view = await order_view(conn, order_id)
        nodes = [r.node_id for r in await conn.execute(text("SELECT node_id FROM nodes WHERE enabled ORDER BY 1"))]
    if view is None:
        response = _page(request, "missing.html", who, order_id=order_id)
        response.status_code = 404
        return response
    decisions = [t for t in view["timeline"] if t["event"] == "routing_decision"]
    open_ids = {f["fulfillment_id"] for f in view["fulfillments"]
                if f["status"] in ("released", "accepted", "picked", "packed")}
    return _page(request, "order.html", who, o=view, decisions=decisions, nodes=nodes, open_ids=open_ids,
                 terminal=view["status"] in TERMINAL)


@router.get("/search")
async def search(request: Request, q: str = Query("", max_length=200)) -> Response:
    """An order id, or an external id (the channel's own number)."""
    await _signed_in(request)
    q = q.strip()
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT order_id FROM orders WHERE order_id = :q OR external_id = :q"
                                       " ORDER BY created_at DESC LIMIT 1"), {"q": q})).first()
    return RedirectResponse(f"/console/orders/{quote(row.order_id if row else q)}", status_code=303)


def mount(app) -> None:
    app.include_router(router)
    app.mount("/console/static", static, name="console-static")
    app.add_exception_handler(_LoginFirst, login_redirect)

