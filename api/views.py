"""Read-model queries behind the GET endpoints."""

from __future__ import annotations

import json
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.messages import Address


def iso(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def _money(v: Any) -> Optional[str]:
    return None if v is None else f"{v:.2f}"


async def order_view(conn: AsyncConnection, order_id: str) -> Optional[dict[str, Any]]:
    o = (await conn.execute(text("SELECT * FROM orders WHERE order_id = :o"), {"o": order_id})).first()
    if o is None:
        return None
    lines = (await conn.execute(
        text("SELECT * FROM order_lines WHERE order_id = :o ORDER BY line_id"), {"o": order_id})).all()
    fulfillments = (await conn.execute(
        text("SELECT * FROM fulfillments WHERE order_id = :o ORDER BY created_at, fulfillment_id"),
        {"o": order_id})).all()
    returns = (await conn.execute(
        text("SELECT * FROM returns WHERE order_id = :o ORDER BY created_at, return_id"), {"o": order_id})).all()
    payments = (await conn.execute(
        text("SELECT * FROM payments WHERE order_id = :o ORDER BY at, payment_id"), {"o": order_id})).all()
    timeline = (await conn.execute(
        text("SELECT at, event, detail FROM timeline_events WHERE order_id = :o ORDER BY at, id"),
        {"o": order_id})).all()
    packs = {(order_id, l.line_id): (l.uom, l.pack) for l in lines if l.pack > 1}
    return {
        "order_id": o.order_id, "external_id": o.external_id, "channel": o.channel,
        "customer": {"id": o.customer_id, "tier": o.customer_tier, "terms": o.credit_terms},
        "status": o.status, "currency": o.currency, "total": _money(o.total), "policy": o.policy,
        "requested_delivery_date": iso(o.requested_delivery_date), "promised_by": iso(o.promised_by),
        "return_deadline": iso(o.return_deadline), "created_at": iso(o.created_at), "at_risk": o.at_risk,
        "lines": [{
            "line_id": l.line_id, "sku": l.sku, "qty": l.qty // l.pack, "uom": l.uom, "pack": l.pack, "eaches": l.qty,
            "unit_price": _money(l.unit_price), "status": l.status, "promised_by": iso(l.promised_by),
            "delivery": l.delivery, "cancelled_qty": l.cancelled_qty, "shipped_qty": l.shipped_qty,
            "delivered_qty": l.delivered_qty, "returned_qty": l.returned_qty, "digital": l.digital,
        } for l in lines],
        "fulfillments": [fulfillment_view(f, packs) for f in fulfillments],
        "returns": [return_view(r) for r in returns],
        "payments": [{
            "payment_id": p.payment_id, "kind": p.kind, "amount": _money(p.amount), "currency": p.currency,
            "status": p.status, "fulfillment_id": p.fulfillment_id, "return_id": p.return_id, "at": iso(p.at),
        } for p in payments],
        "timeline": [{"at": iso(t.at), "event": t.event, "detail": t.detail} for t in timeline],
        "ship_tos": ship_tos(lines, fulfillments),
    }


def ship_tos(lines: Any, fulfillments: Any) -> list[dict[str, Any]]:
    """The order per delivery address: its lines, the shipments carrying them, their promise and progress."""
    groups: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    keys: dict[str, str] = {}  # a 20,000-line order has a few addresses: each is keyed once
    for l in lines:
        address = (l.delivery or {}).get("address")
        if not address:
            continue
        raw = json.dumps(address, sort_keys=True)
        key = keys.get(raw) or keys.setdefault(raw, Address.model_validate(address).ship_to())
        g = groups.setdefault(key, {"ship_to": key, "postal_code": address["postal_code"], "lines": [],
                                    "fulfillments": [], "promised_by": None, "units": 0, "units_by_status": {}})
        g["lines"].append(l.line_id)
        live = l.qty - l.cancelled_qty
        g["units"] += live
        g["units_by_status"][l.status] = g["units_by_status"].get(l.status, 0) + live
        if l.promised_by and (g["promised_by"] is None or l.promised_by > g["promised_by"]):
            g["promised_by"] = l.promised_by
        where[l.line_id] = key
    for f in fulfillments:
        for key in dict.fromkeys(where[x["line_id"]] for x in (f.lines or []) if x["line_id"] in where):
            groups[key]["fulfillments"].append(f.fulfillment_id)
    return [{**g, "promised_by": iso(g["promised_by"])} for g in groups.values()]


Packs = dict[tuple[str, str], tuple[str, int]]  # (order_id, line_id) → (uom, eaches per uom), lines not in eaches


async def line_packs(conn: Any, order_ids: list[str]) -> Packs:
    """The lines of these orders ordered by the case or pallet (what a pick list shows beside the eaches)."""
    return {(r.order_id, r.line_id): (r.uom, r.pack) for r in (await conn.execute(text(
        "SELECT order_id, line_id, uom, pack FROM order_lines WHERE order_id = ANY(:o) AND pack > 1"),
        {"o": sorted(set(order_ids))})).all()}


def in_packs(order_id: str, line: dict[str, Any], packs: Packs) -> dict[str, Any]:
    """A line of eaches, also in the unit it was ordered in: whole packs and the eaches beyond them."""
    uom, pack = packs.get((order_id, line["line_id"]), ("each", 1))
    return {**line, "uom": uom, "uom_qty": line["qty"] // pack, "loose": line["qty"] % pack}


def fulfillment_view(f: Any, packs: Packs) -> dict[str, Any]:
    return {
        "fulfillment_id": f.fulfillment_id, "order_id": f.order_id, "node_id": f.node_id, "status": f.status,
        "lines": [in_packs(f.order_id, l, packs) for l in f.lines], "carrier": f.carrier, "tracking": f.tracking, "ship_by": iso(f.ship_by),
        "at_risk": f.at_risk,
        "reason": f.reason, "kind": f.kind, "method": f.method, "promised_by": iso(f.promised_by),
        "due_at": iso(f.ship_by or f.promised_by), "ready_at": iso(f.ready_at), "hold_until": iso(f.hold_until),
        "arrival": {"at": iso(f.arrived_at), "bay": f.bay, "note": f.arrival_note} if f.arrived_at else None,
        "delivered_at": iso(f.delivered_at), "to_node_id": f.to_node_id, "wave": iso(f.wave),
    }


def return_answer(result: Any) -> dict[str, Any]:
    """A return request's or receipt's answer (a workflow ReturnResult), money written as everywhere."""
    return {**result.model_dump(mode="json"), "refund_amount": _money(result.refund_amount)}


def return_view(r: Any) -> dict[str, Any]:
    return {
        "return_id": r.return_id, "order_id": r.order_id, "status": r.status, "method": r.method,
        "node_id": r.node_id, "reason": r.reason, "lines": r.lines, "label": r.label,
        "refund_amount": _money(r.refund_amount),
    }
