"""Order files as distributors send them: a CSV of order lines, or an ANSI X12 850 purchase order.

Every order in a file stands on its own: a bad row (or segment) rejects its order only, with where and why;
an order already placed (channel + external id) is answered as it is. Accepted orders are recorded and their
workflows started; the promise follows, read with GET /orders/{id}. A file that cannot be read as a whole (no
header, a broken X12 envelope) is a 422 and places nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import ValidationError

import api.answers as A
from api.auth import Principal, require
from api.placement import start_options
from api.routes.orders import admit
from api.schemas import OrderCreate
from models.status import Role
from nodal import x12
from nodal.logging import get_logger
from workflows.order import OrderWorkflow

router = APIRouter(tags=["orders"])
CLIENTS = require(Role.admin, Role.client)

CSV_COLUMNS = ["external_id", "channel", "customer_id", "line_id", "sku", "qty", "uom", "unit_price", "postal_code",
               "address_line1", "requested_delivery_date"]
CSV_REQUIRED = {"external_id", "customer_id", "sku", "qty", "unit_price", "postal_code"}
CONCURRENCY = 16  # orders of one file checked, recorded and started at once
_LINE = re.compile(r"^lines\[(\d+)\]: ")
_UNKNOWN_SKU = re.compile(r"^unknown sku (.+)$")

DESCRIPTION = (
    "`Content-Type: text/csv`: one row per order line, grouped into orders by `external_id`; header "
    f"`{', '.join(CSV_COLUMNS)}` (channel: the key's when left out; uom: each when left out). "
    "`Content-Type: application/edi-x12`: an interchange of 850 purchase orders (BEG03 the external id, N1*BY "
    "the customer, N1*ST/N3/N4 the ship-to, DTM*002 the requested delivery date, PO1 the lines with units EA, "
    "CA or PL and the SKU as VP, SK or BP). Each order is checked on its own: `created`, `existing` (placed "
    "before: nothing changes) or `rejected` with each error's row (CSV, the header is row 1) or segment (X12, "
    "the ISA is segment 1).")


@dataclass
class Draft:
    """One order of a file: its body as the rows make it, where each line came from, what is wrong already."""

    external_id: str
    where: str  # "row" | "segment"
    at: int  # the first row or the ST segment
    body: dict[str, Any]
    line_at: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, at: Optional[int], reason: str) -> None:
        self.errors.append({self.where: at if at is not None else self.at, "reason": reason})


def _address(postal_code: str, line1: str, **more: str) -> dict[str, Any]:
    return {k: v for k, v in {"postal_code": postal_code, "line1": line1, **more}.items() if v}


def csv_drafts(text: str, default_channel: Optional[str]) -> list[Draft]:
    # newline="": the csv module reads line ends itself (\r\n, \r, or \n inside a quoted field).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _csv_drafts(reader, default_channel)
    except csv.Error as e:  # a field over the size limit, a NUL byte: the file cannot be read as a whole
        raise HTTPException(422, f"the CSV cannot be read at row {reader.line_num}: {e}")


def _csv_drafts(reader: csv.DictReader, default_channel: Optional[str]) -> list[Draft]:
    header = [h.strip() for h in (reader.fieldnames or [])]
    if missing := sorted(CSV_REQUIRED - set(header)):
        raise HTTPException(422, f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})")
    if unknown := sorted(set(header) - set(CSV_COLUMNS)):
        raise HTTPException(422, f"unknown CSV columns {', '.join(unknown)} (columns: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    drafts: dict[tuple[str, str], Draft] = {}
    for row in reader:
        n = reader.line_num  # the header is row 1
        r = {k: (v or "").strip() for k, v in row.items() if k is not None}
        channel = r.get("channel") or default_channel or ""
        key = (channel, r["external_id"])
        d = drafts.get(key)
        if d is None:
            d = drafts[key] = Draft(r["external_id"], "row", n, {
                "external_id": r["external_id"], "channel": channel, "customer": {"id": r["customer_id"]},
                "lines": [], **({"requested_delivery_date": r["requested_delivery_date"]}
                                if r.get("requested_delivery_date") else {})})
        if None in row:
            d.error(n, "the row has more fields than the header")
        if r["customer_id"] != d.body["customer"]["id"]:
            d.error(n, f"customer_id {r['customer_id']!r} differs from the order's first row ({d.body['customer']['id']!r})")
        if (r.get("requested_delivery_date") or None) != d.body.get("requested_delivery_date"):
            d.error(n, "requested_delivery_date differs from the order's first row")
        d.body["lines"].append({
            **({"line_id": r["line_id"]} if r.get("line_id") else {}), "sku": r["sku"], "qty": r["qty"],
            "uom": r.get("uom") or "each", "unit_price": r["unit_price"],
            "delivery": {"method": "ship_standard", "address": _address(r["postal_code"], r.get("address_line1", ""))}})
        d.line_at.append(n)
    return list(drafts.values())


def x12_drafts(text: str, channel: Optional[str]) -> list[Draft]:
    try:
        interchange = x12.parse(text)
    except x12.X12Error as e:
        raise HTTPException(422, f"not a readable X12 interchange: segment {e.segment}: {e.reason}")
    drafts = []
    for ts in interchange.sets:
        po = x12.purchase_order(ts, interchange.sender)
        d = Draft(po.po_number, "segment", po.segment, {
            "external_id": po.po_number, "channel": channel or "", "customer": {"id": po.buyer},
            "lines": [{"line_id": l.line_id, "sku": l.sku, "qty": l.qty, "uom": l.uom, "unit_price": str(l.unit_price),
                       "delivery": {"method": "ship_standard", "address": po.ship_to}} for l in po.lines],
            **({"requested_delivery_date": po.requested_delivery_date.isoformat()}
               if po.requested_delivery_date else {})})
        d.line_at = [l.segment for l in po.lines]
        for at, reason in po.errors:
            d.error(at, reason)
        drafts.append(d)
    return drafts


def _located(d: Draft, e: dict[str, Any]) -> tuple[Optional[int], str]:
    """A validation error of the order's body, at the row or segment of the line it is about."""
    loc = e.get("loc", ())
    at = d.line_at[loc[1]] if len(loc) > 1 and loc[0] == "lines" and isinstance(loc[1], int) \
        and loc[1] < len(d.line_at) else None
    field_ = ".".join(str(x) for x in loc[2:] if not isinstance(x, int)) if at is not None else \
        ".".join(str(x) for x in loc)
    return at, f"{field_}: {e['msg']}" if field_ else e["msg"]


async def _take(app: Any, d: Draft, who: Principal) -> dict[str, Any]:
    out: dict[str, Any] = {"external_id": d.external_id}
    if not d.errors:
        try:
            body = OrderCreate.model_validate(d.body)
        except ValidationError as e:
            for err in e.errors():
                d.error(*_located(d, err))
    if d.errors:
        return {**out, "status": "rejected", "errors": d.errors}
    try:
        order_id, inp, _ = await admit(app, body, who)
    except HTTPException as e:
        for p in getattr(e, "problems", [str(e.detail)]):
            if m := _LINE.match(p):
                d.error(d.line_at[int(m.group(1))], _LINE.sub("", p))
            elif m := _UNKNOWN_SKU.match(p):  # at each row that orders it
                for line, at in zip(body.lines, d.line_at):
                    if line.sku == m.group(1):
                        d.error(at, p)
            else:
                d.error(None, p)
        return {**out, "status": "rejected", "errors": d.errors}
    if inp is None:
        return {**out, "status": "existing", "order_id": order_id}
    try:
        await app.temporal.start_workflow(OrderWorkflow.run, **start_options(inp, app.settings.task_queue))
    except Exception as e:  # the intake is durable: the recovery sweep starts what did not start here
        get_logger(order_id=order_id).warning("order.import_start_pending", error=type(e).__name__)
    return {**out, "status": "created", "order_id": order_id}


@router.post("/orders/import", summary="Place the orders of a CSV or X12 850 file, each on its own",
             response_model=A.ImportAnswer, responses=A.errors(403, 413, 415, 422), description=DESCRIPTION,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}, "example": ",".join(CSV_COLUMNS) + "\n"
                              "PO-1001,b2b,acme,L1,SKU-1,2,case,120.00,60601,1 Main St,2026-12-20\n"},
                 "application/edi-x12": {"schema": {"type": "string"}}}}})
async def import_orders(request: Request, who: Principal = Depends(CLIENTS),
                        channel: Optional[str] = Query(None, description="the orders' channel, where the file "
                                                       "does not say it (X12; a CSV without the column)")) -> dict:
    if who.role == Role.client and channel is not None and channel != who.channel:
        raise HTTPException(403, f"this key imports orders for channel {who.channel} only")
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/edi-x12"):
        raise HTTPException(415, "send text/csv or application/edi-x12")
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HTTPException(422, f"the file is not UTF-8 text: byte {e.start}")
    channel = channel or (who.channel if who.role == Role.client else None)
    drafts = csv_drafts(text, channel) if kind == "text/csv" else x12_drafts(text, channel)
    if not drafts:
        raise HTTPException(422, "the file holds no orders")
    app = request.app.state
    gate = asyncio.Semaphore(CONCURRENCY)

    async def take(d: Draft) -> dict[str, Any]:
        async with gate:
            return await _take(app, d, who)

    results = await asyncio.gather(*(take(d) for d in drafts))
    counts = {s: sum(r["status"] == s for r in results) for s in ("created", "existing", "rejected")}
    get_logger(channel=channel).info("orders.imported", kind=kind, **counts)
    return {"orders": results, **counts}
