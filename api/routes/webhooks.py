"""Subscriptions to outbound events (webhooks): create or change, list, delete, rotate the secret, see the
deliveries, replay. Admins subscribe to anything; a client key to its own channel's events; a partner key to its
own node's fulfillment and return events. Support reads them all."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import uuid
from datetime import datetime, timezone
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy import text
from temporalio.service import RPCError

import api.answers as A
from api.views import iso
from api import idempotency
from api.auth import Principal, require
from api.processes import start_webhook
from api.schemas import ReplayIn, RotateIn, WebhookIn
from events.catalogue import MATCH_SQL
from events.delivery import PENDING_SQL
from events.outbox import CHANGED, deliveries_channel
from models.status import Role
from nodal.durations import parse_duration

router = APIRouter(tags=["events"])
OWNERS = require(Role.admin, Role.client, Role.partner)
READERS = require(Role.admin, Role.support, Role.client, Role.partner)
PARTNER_GROUPS = ("fulfillment.", "return.")  # what a node's partner may hear of


def new_secret() -> str:
    """whsec_ and 24 random bytes in base64: the Standard Webhooks form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _scope(body: WebhookIn, who: Principal) -> tuple[Optional[str], Optional[str]]:
    """The channel and node this key's subscription is bound to (a client's channel, a partner's node)."""
    channel, node_id = body.channel, body.node_id
    if who.role == Role.client:
        if channel not in (None, who.channel) or node_id is not None:
            raise HTTPException(403, f"this key subscribes to channel {who.channel}'s events only")
        channel = who.channel
    elif who.role == Role.partner:
        if node_id not in (None, who.node_id) or channel is not None:
            raise HTTPException(403, f"this key subscribes to node {who.node_id}'s events only")
        wrong = [p for p in body.events if not p.startswith(PARTNER_GROUPS)]
        if wrong:
            raise HTTPException(403, f"a partner key hears of its node's fulfillments and returns only, not {', '.join(wrong)}")
        node_id = who.node_id
    return channel, node_id


def _owned(row: Any, who: Principal) -> bool:
    if who.role in (Role.admin, Role.support):
        return True
    if who.role == Role.client:
        return row.channel == who.channel and row.node_id is None
    return who.role == Role.partner and row.node_id == who.node_id


async def _public_url(url: str, request: Request, who: Principal) -> None:
    """A client's or partner's webhook may not point inside the network the API runs in (unless allowed)."""
    if who.role == Role.admin or request.app.state.settings.webhook_private_urls:
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        raise HTTPException(422, f"cannot resolve the url's host {host}")
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise HTTPException(422, f"the url's host {host} is a private address ({ip}); an admin may subscribe it")


_VIEW = f"""
SELECT w.*, p.pending, p.oldest FROM webhooks w
{PENDING_SQL}
"""



def _view(row: Any) -> dict[str, Any]:
    rotating = row.previous_until if row.previous_secret and row.previous_until and \
        row.previous_until > datetime.now(timezone.utc) else None
    return {"name": row.name, "url": row.url, "events": list(row.events), "channel": row.channel,
            "node_id": row.node_id, "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
            "previous_secret_until": iso(rotating), "delivered": row.delivered, "failed": row.failed,
            "failed_attempts": row.failed_attempts, "pending": row.pending or 0, "oldest_pending_at": iso(row.oldest)}


async def _row(conn, name: str, who: Principal, lock: bool = False) -> Any:
    row = (await conn.execute(text(_VIEW + " WHERE w.name = :n" + (" FOR UPDATE OF w" if lock else "")),
                              {"n": name})).first()
    if row is None:
        raise HTTPException(404, f"no webhook {name}")
    if not _owned(row, who):
        raise HTTPException(403, "this webhook belongs to another channel or node")
    return row


NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


async def _tell(conn, name: str, settings: bool = False) -> None:
    """Wake the subscription's delivery process at commit: deliveries are due, or its settings changed."""
    await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": deliveries_channel(name), "p": CHANGED if settings else ""})


@router.put("/webhooks/{name}", summary="Subscribe an endpoint to events (or change a subscription)",
            description="Each matching event is POSTed to the url, signed per the Standard Webhooks specification "
                        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`); the secret is in the answer that "
                        "creates the subscription and never again. The events and their bodies are in the OpenAPI's "
                        "`webhooks`. A change applies within seconds; what was pending is delivered to the new url.",
            response_model=A.WebhookSaved, responses={201: {"model": A.WebhookSaved, "description": "Created"},
                                                      **A.errors(403, 422, 503)})
async def put_webhook(body: WebhookIn, request: Request, response: Response,
                      name: str = Path(pattern=NAME), who: Principal = Depends(OWNERS)) -> dict[str, Any]:
    channel, node_id = _scope(body, who)
    secret: Optional[str] = None
    async with request.app.state.db.engine.begin() as conn:
        existing = (await conn.execute(text("SELECT * FROM webhooks WHERE name = :n FOR UPDATE"), {"n": name})).first()
        if existing is not None and not _owned(existing, who):
            raise HTTPException(403, "this webhook belongs to another channel or node")
        await _public_url(body.url, request, who)
        if existing is not None:
            await conn.execute(text(
                "UPDATE webhooks SET url = :u, events = :e, channel = :c, node_id = :nd, updated_at = now()"
                " WHERE name = :n"), {"n": name, "u": body.url, "e": body.events, "c": channel, "nd": node_id})
            await _tell(conn, name, settings=True)
            generation = existing.generation
        else:
            secret, generation = new_secret(), uuid.uuid4().hex[:16]
            await conn.execute(text(
                "INSERT INTO webhooks (name, generation, url, events, channel, node_id, secret, owner_key_id,"
                " created_at, updated_at) VALUES (:n, :g, :u, :e, :c, :nd, :s, :k, now(), now())"),
                {"n": name, "g": generation, "u": body.url, "e": body.events, "c": channel, "nd": node_id, "s": secret,
                 "k": who.key_id})
        # Started before the commit: a subscription never exists without its delivery process (which waits for
        # the commit; after a failed one it finds no subscription and ends, events/delivery.py NEW_GRACE).
        try:
            await start_webhook(request.app.state.temporal, request.app.state.settings, name, generation)
        except (RPCError, RuntimeError) as e:
            raise HTTPException(503, f"workflow service unavailable: {e}")
        row = (await conn.execute(text(_VIEW + " WHERE w.name = :n"), {"n": name})).one()
    response.status_code = 201 if existing is None else 200
    return {**_view(row), "secret": secret, "created": existing is None}


@router.get("/webhooks", summary="Subscriptions, with their delivery counts", response_model=A.WebhookList,
            responses=A.errors(403))
async def list_webhooks(request: Request, who: Principal = Depends(READERS)) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(_VIEW + " ORDER BY w.name"))).all()
    return {"webhooks": [_view(r) for r in rows if _owned(r, who)]}


@router.delete("/webhooks/{name}", summary="Unsubscribe: nothing more is sent, pending deliveries are dropped",
               response_model=A.WebhookDeleted, responses=A.errors(403, 404))
async def delete_webhook(request: Request, name: str = Path(pattern=NAME),
                         who: Principal = Depends(OWNERS)) -> dict[str, Any]:
    async with request.app.state.db.engine.begin() as conn:
        await _row(conn, name, who, lock=True)
        await conn.execute(text("DELETE FROM webhook_deliveries WHERE webhook = :n"), {"n": name})
        await conn.execute(text("DELETE FROM webhooks WHERE name = :n"), {"n": name})
    # Its delivery process sees the subscription gone within seconds and ends.
    return {"name": name, "deleted": True}


@router.post("/webhooks/{name}/rotate-secret", summary="A new signing secret; the old one keeps signing for the overlap",
             description="During the overlap every delivery carries two signatures (old and new secret), so the "
                         "receiver can switch over at any moment.",
             response_model=A.SecretRotated, responses=A.errors(403, 404, 422))
async def rotate_secret(request: Request, body: RotateIn = RotateIn(), name: str = Path(pattern=NAME),
                        who: Principal = Depends(OWNERS)) -> dict[str, Any]:
    secret = new_secret()
    async with request.app.state.db.engine.begin() as conn:
        await _row(conn, name, who, lock=True)
        until = (await conn.execute(text(
            "UPDATE webhooks SET previous_secret = secret, secret = :s, previous_until = now() + CAST(:o AS interval),"
            " updated_at = now() WHERE name = :n RETURNING previous_until"),
            {"n": name, "s": secret, "o": parse_duration(body.overlap)})).scalar_one()
        await _tell(conn, name, settings=True)
        answer = {"name": name, "secret": secret, "previous_secret_until": until.isoformat()}
        await idempotency.record(request, conn, answer, secret=["secret"])
    return answer


@router.get("/webhooks/{name}/deliveries", summary="A subscription's deliveries, newest first",
            response_model=A.DeliveryList, responses=A.errors(403, 404, 422))
async def deliveries(request: Request, name: str = Path(pattern=NAME), who: Principal = Depends(READERS),
                     status: Optional[Literal["pending", "delivered", "failed"]] = None,
                     limit: int = Query(100, ge=1, le=1000), cursor: Optional[int] = None) -> dict[str, Any]:
    async with request.app.state.db.engine.connect() as conn:
        await _row(conn, name, who)
        rows = (await conn.execute(text(
            "SELECT d.*, e.id AS event_id, e.type, e.order_id FROM webhook_deliveries d"
            " LEFT JOIN events e ON e.seq = d.event_seq WHERE d.webhook = :n"
            " AND (CAST(:s AS varchar) IS NULL OR d.status = :s) AND (CAST(:c AS bigint) IS NULL OR d.id < :c)"
            " ORDER BY d.id DESC LIMIT :l"), {"n": name, "s": status, "c": cursor, "l": limit})).all()
    return {"deliveries": [{
        "delivery_id": r.id, "event_id": r.event_id or f"seq:{r.event_seq}", "type": r.type, "order_id": r.order_id,
        "status": r.status, "attempts": r.attempts,
        "next_attempt_at": r.next_attempt_at.isoformat() if r.status == "pending" else None,
        "last_status_code": r.last_status_code, "last_error": r.last_error, "created_at": r.created_at.isoformat(),
        "delivered_at": iso(r.delivered_at)} for r in rows],
        "next_cursor": rows[-1].id if len(rows) == limit else None}


# Events since then the subscription matches: failed deliveries due again, missing ones made (events from before
# it existed), and with include_delivered the delivered ones too. Pending ones keep their turn.
_REPLAY = text(f"""
WITH ev AS (SELECT e.seq, e.stream, e.type, e.channel, e.node_id FROM events e WHERE e.created_at >= :since),
r AS (
  INSERT INTO webhook_deliveries (webhook, event_seq, stream, status, attempts, next_attempt_at, created_at)
  SELECT w.name, ev.seq, ev.stream, 'pending', 0, now(), now() FROM ev JOIN webhooks w ON w.name = :n AND {MATCH_SQL}
  ON CONFLICT (webhook, event_seq) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = now(),
    created_at = now(), delivered_at = NULL, last_error = NULL, last_status_code = NULL
  WHERE webhook_deliveries.status = 'failed' OR (:everything AND webhook_deliveries.status = 'delivered')
  RETURNING 1
)
SELECT COUNT(*) FROM r
""")


@router.post("/webhooks/{name}/replay", summary="Send again what was not delivered since a moment (or everything)",
             response_model=A.Replayed, responses=A.errors(403, 404, 422))
async def replay(body: ReplayIn, request: Request, name: str = Path(pattern=NAME),
                 who: Principal = Depends(OWNERS)) -> dict[str, Any]:
    async with request.app.state.db.engine.begin() as conn:
        await _row(conn, name, who, lock=True)
        n = (await conn.execute(_REPLAY, {"n": name, "since": body.since, "everything": body.include_delivered})).scalar_one()
        await _tell(conn, name)
        answer = {"name": name, "requeued": n}
        await idempotency.record(request, conn, answer)
    return answer
