"""Carrier tracking scans in, and the customer's own tracking link.

A scan is kept once (carrier, tracking, event, time), whatever order and however often it comes; a new one is on the
order's timeline and in the outbox (fulfillment.tracking) in the same transaction. What a scan changes (delivered,
an exception) is applied to the fulfillment's workflow by the API after the commit, under an Update id made of the
scan, so a carrier's retry applies it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events import outbox
from events.catalogue import NewEvent
from inventory import service

# Scans that change the fulfillment (the delivered milestone, or its end as an exception); the others are only kept.
EFFECTS = frozenset({"delivered", "exception", "returned_to_sender"})
# What of a scan's detail goes out in events and on the timeline: not a signer's name (personal data).
SHARED_DETAIL = ("location", "reason", "proof")


@dataclass
class Scan:
    tracking: str
    event: str
    at: datetime
    detail: dict[str, Any]


@dataclass
class Outcome:
    scan: Scan
    outcome: str  # recorded | duplicate | unknown_tracking
    fulfillment_id: Optional[str] = None
    order_id: Optional[str] = None
    status: Optional[str] = None  # the fulfillment's, as the read model had it
    kind: Optional[str] = None
    node_id: Optional[str] = None


_FIND = text("SELECT fulfillment_id, order_id, node_id, status, kind, tracking FROM fulfillments"
             " WHERE tracking = ANY(:t) AND carrier = :c")
_KEEP = text("INSERT INTO carrier_scans (carrier, tracking, event, at, detail, fulfillment_id, order_id, received_at)"
             " VALUES (:c, :t, :e, :at, CAST(:d AS jsonb), :f, :o, now())"
             " ON CONFLICT (carrier, tracking, event, at) DO NOTHING RETURNING id")
_TIMELINE = text("INSERT INTO timeline_events (order_id, key, at, event, detail) VALUES (:o, :k, :at, 'carrier_scan',"
                 " CAST(:d AS jsonb)) ON CONFLICT (order_id, key) DO NOTHING")


def shared(detail: dict[str, Any]) -> dict[str, Any]:
    out = {k: detail[k] for k in SHARED_DETAIL if k in detail and k != "proof"}
    if detail.get("proof") or detail.get("signed_by"):
        out["proof"] = True  # there is a proof of delivery (the carrier keeps it)
    return out


async def record(conn: AsyncConnection, carrier: str, scans: list[Scan]) -> list[Outcome]:
    """Keep the scans (in the caller's transaction), each with its timeline entry and event if it is new."""
    found = {r.tracking: r for r in await conn.execute(_FIND, {"t": sorted({s.tracking for s in scans}), "c": carrier})}
    out, events = [], []
    for scan in sorted(scans, key=lambda s: s.at):
        f = found.get(scan.tracking)
        if f is None:
            out.append(Outcome(scan, "unknown_tracking"))
            continue
        new = (await conn.execute(_KEEP, {"c": carrier, "t": scan.tracking, "e": scan.event, "at": scan.at,
                                          "d": json.dumps(scan.detail), "f": f.fulfillment_id, "o": f.order_id})).scalar()
        out.append(Outcome(scan, "recorded" if new else "duplicate", f.fulfillment_id, f.order_id, f.status, f.kind,
                           f.node_id))
        if new:
            detail = {"fulfillment_id": f.fulfillment_id, "node_id": f.node_id, "carrier": carrier,
                      "tracking": scan.tracking, "event": scan.event, "at": scan.at.isoformat(),
                      "detail": shared(scan.detail)}
            key = f"scan:{new}"
            await conn.execute(_TIMELINE, {"o": f.order_id, "k": key, "at": scan.at, "d": json.dumps(detail)})
            events.append(NewEvent(id=f"{f.order_id}.{key}", type="fulfillment.tracking", stream=f.order_id,
                                   at=scan.at, data=detail, order_id=f.order_id, node_id=f.node_id))
    await outbox.write(conn, events)
    return out


async def restock_returned(conn: AsyncConnection, order_id: str, fulfillment_id: str, node_id: str) -> int:
    """A parcel back at its sender: the units it took out of the node's stock come back, pending inspection. The
    ledger's ids are the order workflow's own for the same receipt (restock:<fulfillment>-RTS:<line>): once."""
    rows = (await conn.execute(text(
        "SELECT line_id, sku, qty FROM reservations WHERE fulfillment_id = :f AND status = 'consumed'"
        " ORDER BY sku, line_id"), {"f": fulfillment_id})).all()
    units = 0
    for r in rows:
        if await service.receive_units(conn, node_id, r.sku, r.qty, "pending_inspection", "return_restock",
                                       f"restock:{fulfillment_id}-RTS:{r.line_id}", order_id):
            units += r.qty
    return units


# ---------------------------------------------------------------- the customer's tracking link
_secrets: dict[str, bytes] = {}


async def tracking_secret(conn: AsyncConnection) -> bytes:
    """The deployment's key for tracking links: made once, shared by every process through the database."""
    where = str(conn.engine.url)
    cached = _secrets.get(where)
    if cached is not None:
        return cached
    await conn.execute(text("INSERT INTO service_secrets (name, value, created_at) VALUES ('tracking', :v, now())"
                            " ON CONFLICT (name) DO NOTHING"), {"v": secrets.token_urlsafe(48)})
    value = (await conn.execute(text("SELECT value FROM service_secrets WHERE name = 'tracking'"))).scalar_one()
    _secrets[where] = value.encode()
    return _secrets[where]


def tracking_token(secret: bytes, order_id: str) -> str:
    digest = hmac.new(secret, f"track:{order_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def token_matches(secret: bytes, order_id: str, token: str) -> bool:
    return hmac.compare_digest(tracking_token(secret, order_id).encode(), token.encode())
