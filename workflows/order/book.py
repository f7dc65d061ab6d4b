"""The order's book: everything one order workflow knows, in one object, and ONE status ladder.

Invariant: every unit of a line is in exactly one place, counted once —
    qty = cancelled + planned (reserved, not yet at a node) + at_nodes (with a live fulfillment) + open
and shipped ⊆ at_nodes, delivered ⊆ shipped (a digital line, delivered by the order itself, counts shipped and
delivered with no node). Counters only change through ``Book.edit`` and the fulfillment
tallies, which keep the order's totals (``Book.total``) equal to the sum of its lines. So a status, an open
quantity or a total is O(1) and per-line work stays linear at any order size (a 20,000-line order is checked
by the same code as a 1-line one).

The book is plain data (dataclasses over the message models): it travels whole to the next run when a
long-lived order continues as new.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Iterable, Optional

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import PlainSerializer, PlainValidator, TypeAdapter
    from models.messages import (
        Delivery, ExchangeState, FulfillmentEvent, FulfillmentState, LineQty, LineState, LineUpdates, OrderInput, PaymentRecord, Policy,
        ReturnState, SupplyClaimLine, TimelineEntry, cents,
    )
    from models.status import (
        FULFILLMENT_DELIVERED, FULFILLMENT_FAILED, FULFILLMENT_TERMINAL, DeliveryMethod, FulfillmentStatus as FS, OrderStatus as OS,
    )

SHIPPED = frozenset({FS.shipped, FS.delivered, FS.collected})  # out of the node's hands (collected: delivered too)


@dataclass
class Line:
    line_id: str
    sku: str
    qty: int
    unit_price: Decimal
    delivery: Delivery
    digital: bool = False  # delivered by the order itself at release: no node, no stock
    promised_by: Optional[datetime] = None
    cancelled: int = 0
    planned: int = 0  # reserved, not yet at a node (remorse window, preorders, B2B dates)
    at_nodes: int = 0  # with a live fulfillment (released … delivered)
    shipped: int = 0
    delivered: int = 0
    returned: int = 0  # received back
    return_requested: int = 0
    excluded: list[str] = field(default_factory=list)  # nodes that failed this line
    claims: list[SupplyClaimLine] = field(default_factory=list)  # incoming supply promised to its open units
    ready: int = 0  # waiting for the customer at a store (⊆ at_nodes)
    uom: str = "each"  # as ordered: qty and the counters stay in eaches
    pack: int = 1  # eaches per uom: the line is allocated in whole packs
    backorder: Optional[str] = None  # its own policy.backorder (None: the order's)
    prepaid: int = 0  # units paid for with a parcel the carrier lost, waiting to go out again (no charge)

    @property
    def live(self) -> int:
        return self.qty - self.cancelled

    @property
    def open(self) -> int:
        """Units nobody holds: to be sourced (backordered once the order is released)."""
        return 0 if self.digital else max(self.live - self.planned - self.at_nodes, 0)


@dataclass
class Tally:
    """The order's sums of its lines' counters."""

    live: int = 0
    open: int = 0
    planned: int = 0
    at_nodes: int = 0
    shipped: int = 0
    delivered: int = 0
    returned: int = 0
    claimed: int = 0  # units of incoming supply claimed
    ready: int = 0


@dataclass
class Planned:
    """A fulfillment reserved but not yet at its node: in the remorse window, or held until a release day."""

    fulfillment_id: str
    node_id: str
    lines: list[LineQty]
    method: DeliveryMethod
    postal_code: Optional[str] = None
    carrier: Optional[str] = None
    ship_by: Optional[datetime] = None
    promised_by: Optional[datetime] = None
    hold_until: Optional[datetime] = None  # preorders and B2B dates: not released to the node before
    transfer_to: Optional[str] = None  # ship to store: the node sends the units to this pickup store
    wave: Optional[datetime] = None  # released in this wave of its node, with the order's other work there
    ship_to: Optional[str] = None  # Address.ship_to: what one shipment per wave consolidates


@dataclass
class Money:
    authorized: Decimal = Decimal("0")
    authorization: Optional[str] = None  # the payment id of the authorization in force
    authorized_at: Optional[datetime] = None
    captured_before: Decimal = Decimal("0")  # captured on earlier authorizations when this one was made
    rounds: int = 0
    settled: bool = False  # the uncaptured remainder was voided: nothing more can be captured
    hold_since: Optional[datetime] = None  # a re-authorization was declined: waiting for the payment
    captures: int = 0  # order-level captures (digital lines, re-tried shipment captures)


@dataclass
class Ids:
    """Sequences behind the ids the order makes: stable across replays and continue-as-new."""

    fulfillment: int = 0
    ret: int = 0
    exchange: int = 0
    cancel: int = 0
    timeline: int = 0
    version: int = 0
    runs: int = 0  # runs before this one (continue-as-new)
    stamp: int = 0  # the attempt stamp of the last snapshot mirrored (workflows/order/mirror.py)


# ------------------------------------------------------------------ the lines as they travel
# A book continues as new whole; its lines travel as columns, each distinct delivery once. A 20,000-line book is
# 2 MB this way and decodes in tens of milliseconds; as 20,000 nested objects it was 8 MB and half a second of
# validation inside the workflow task (more under load), past the 2 s deadlock limit on a busy worker.
_LINE_FIELDS = [f.name for f in fields(Line)]
_CLAIMS = TypeAdapter(list[SupplyClaimLine])


def lines_to_columns(lines: dict[str, "Line"]) -> dict[str, Any]:
    deliveries: dict[str, int] = {}
    shapes: list[Any] = []
    cols: dict[str, list[Any]] = {name: [] for name in _LINE_FIELDS}
    for line in lines.values():
        for name in _LINE_FIELDS:
            value = getattr(line, name)
            if name == "delivery":
                key = value.model_dump_json()
                if key not in deliveries:
                    deliveries[key] = len(shapes)
                    shapes.append(value.model_dump(mode="json"))
                value = deliveries[key]
            elif name == "unit_price":
                value = str(value)
            elif name == "promised_by":
                value = value.isoformat() if value is not None else None
            elif name == "claims":
                value = [c.model_dump(mode="json") for c in value] if value else []
            cols[name].append(value)
    return {"deliveries": shapes, "columns": cols}


def lines_from_columns(data: Any) -> dict[str, "Line"]:
    if isinstance(data, dict) and "columns" in data and "deliveries" in data:
        shapes = [Delivery.model_validate(d) for d in data["deliveries"]]
        cols = data["columns"]
        parse = {"delivery": lambda i: shapes[i], "unit_price": Decimal,
                 "promised_by": lambda v: datetime.fromisoformat(v) if v is not None else None,
                 "claims": lambda v: _CLAIMS.validate_python(v) if v else [], "excluded": list}
        n = len(cols["line_id"])
        # A column the book was written without (an older run) takes the field's default.
        default = {f.name: f.default for f in fields(Line)}
        columns = [[parse[name](v) for v in cols[name]] if name in parse else cols.get(name, [default[name]] * n)
                   for name in _LINE_FIELDS]
        assert all(len(c) == n for c in columns), "columns of unequal length"
        return {values[0]: Line(*values) for values in zip(*columns)}
    return _LINES.validate_python(data)  # as objects (built in Python, or a book written before columns)


_LINES = TypeAdapter(dict[str, Line])
LineBook = Annotated[dict[str, Line], PlainValidator(lines_from_columns),
                     PlainSerializer(lines_to_columns, when_used="always")]


def carried(book: "Book") -> dict[str, Any]:
    """The book as the next run receives it (the payload converter's own JSON would not use the columns)."""
    return _BOOK.dump_python(book, mode="json")


@dataclass
class Book:
    order: OrderInput  # as placed, without its lines (they live below)
    policy: Policy
    requested_date: Optional[date]
    lines: LineBook
    phase: OS = OS.received
    reason: Optional[str] = None
    planned: dict[str, Planned] = field(default_factory=dict)
    fulfillments: dict[str, FulfillmentState] = field(default_factory=dict)
    returns: dict[str, ReturnState] = field(default_factory=dict)
    exchanges: dict[str, ExchangeState] = field(default_factory=dict)
    # A replacement order: its exchange's return arrived (it may be released), or never will (it is cancelled).
    exchange_cleared: bool = False
    exchange_void: bool = False
    payments: list[PaymentRecord] = field(default_factory=list)
    money: Money = field(default_factory=Money)
    ids: Ids = field(default_factory=Ids)
    total: Tally = field(default_factory=Tally)
    reroutes: int = 0
    created_at: Optional[datetime] = None
    release_at: Optional[datetime] = None  # the remorse window's end
    approval_until: Optional[datetime] = None  # awaiting approval: cancelled if not approved by then
    digital_at: Optional[datetime] = None
    promise_ready: bool = False
    # Fulfillment events not yet applied, and answers to the order's cancellation requests by request id.
    events: list[FulfillmentEvent] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)
    # Updates the API sent under an Idempotency-Key, applied in this run or an earlier one (Temporal runs an
    # Update id once per run; a long-lived order continues as new), with what they made (a return's id) or "".
    applied: dict[str, str] = field(default_factory=dict)
    # Stock or supply of a waiting line changed; when the next backorder retry is due and how long it waits.
    wake: bool = False
    retry_every: Optional[timedelta] = None
    # What the next read-model mirror must write besides the header.
    timeline: list[TimelineEntry] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)  # dirty lines the read model does not have whole yet
    removed: set[str] = field(default_factory=set)
    dirty_returns: set[str] = field(default_factory=set)
    search_attributes: list[Any] = field(default_factory=list)  # the last values upserted

    # ------------------------------------------------------------------ building
    @classmethod
    def new(cls, inp: OrderInput) -> "Book":
        book = cls(order=inp.model_copy(update={"lines": []}), policy=inp.policy,
                   requested_date=inp.requested_delivery_date, lines={})
        for l in inp.lines:
            book.add_line(Line(line_id=l.line_id, sku=l.sku, qty=l.qty, unit_price=l.unit_price, delivery=l.delivery,
                               uom=l.uom, pack=l.pack, backorder=l.backorder))
        return book

    @property
    def order_id(self) -> str:
        return self.order.order_id

    def add_line(self, line: Line) -> None:
        self.lines[line.line_id] = line
        self._count(line, 1)
        self.dirty.add(line.line_id)
        self.fresh.add(line.line_id)
        self.removed.discard(line.line_id)

    def remove_line(self, line_id: str) -> None:
        self._count(self.lines.pop(line_id), -1)
        self.dirty.discard(line_id)
        self.fresh.discard(line_id)
        self.removed.add(line_id)

    # ------------------------------------------------------------------ counting
    def _count(self, line: Line, sign: int) -> None:
        t = self.total
        t.live += sign * line.live
        t.open += sign * line.open
        t.planned += sign * line.planned
        t.at_nodes += sign * line.at_nodes
        t.shipped += sign * line.shipped
        t.delivered += sign * line.delivered
        t.returned += sign * line.returned
        t.ready += sign * line.ready
        t.claimed += sign * sum(c.qty for c in line.claims)

    def edit(self, line: Line, **deltas: int) -> None:
        """Move a line's counters by these deltas, keeping the totals."""
        self._count(line, -1)
        for k, v in deltas.items():
            setattr(line, k, getattr(line, k) + v)
        self._count(line, 1)
        self.dirty.add(line.line_id)

    def set_claims(self, line: Line, claims: list[SupplyClaimLine]) -> None:
        self._count(line, -1)
        line.claims = claims
        self._count(line, 1)

    def make_digital(self, line: Line, promised_by: Optional[datetime]) -> None:
        self._count(line, -1)
        line.digital, line.promised_by = True, promised_by
        self._count(line, 1)
        self.dirty.add(line.line_id)

    def touch(self, line: Line) -> None:
        """The line changed in a way the counters do not show (a promise, a flag): mirror it."""
        self.dirty.add(line.line_id)

    def _tally_fulfillment(self, f: FulfillmentState, sign: int) -> None:
        if f.status in FULFILLMENT_FAILED or f.status == FS.received_at_store:
            return  # holds nothing: failed, or a transfer that handed its units to the pickup at the store
        shipped, delivered = f.status in SHIPPED, f.status in FULFILLMENT_DELIVERED
        ready = f.status == FS.ready_for_pickup
        for l in f.lines:
            line = self.lines.get(l.line_id)
            if line is not None:
                self.edit(line, at_nodes=sign * l.qty, shipped=sign * l.qty if shipped else 0,
                          delivered=sign * l.qty if delivered else 0, ready=sign * l.qty if ready else 0)

    def _tally_planned(self, p: Planned, sign: int) -> None:
        for l in p.lines:
            self.edit(self.lines[l.line_id], planned=sign * l.qty)

    def plan(self, p: Planned) -> None:
        self.planned[p.fulfillment_id] = p
        self._tally_planned(p, 1)

    def unplan(self, fulfillment_id: str) -> Planned:
        p = self.planned.pop(fulfillment_id)
        self._tally_planned(p, -1)
        return p

    def replan(self, p: Planned, lines: list[LineQty]) -> None:
        """A planned fulfillment keeps only these lines (some of its units were given back)."""
        self._tally_planned(p, -1)
        p.lines = lines
        if lines:
            self._tally_planned(p, 1)
        else:
            del self.planned[p.fulfillment_id]

    def start(self, f: FulfillmentState) -> None:
        self.fulfillments[f.fulfillment_id] = f
        self._tally_fulfillment(f, 1)

    def update_fulfillment(self, f: FulfillmentState, status: FS, lines: list[LineQty]) -> None:
        self._tally_fulfillment(f, -1)
        f.status, f.lines = status, lines
        self._tally_fulfillment(f, 1)

    def enter(self, phase: OS, reason: Optional[str] = None) -> None:
        """A new phase: every line's status may change with it (the ladder reads the phase)."""
        self.phase = phase
        if reason is not None:
            self.reason = reason
        self.dirty.update(self.lines)

    # ------------------------------------------------------------------ questions
    def status(self) -> OS:
        t = self.total
        return ladder(self.phase, t.live, t.shipped, t.delivered, t.returned, t.open, t.planned, t.at_nodes, t.ready)

    def line_status(self, line: Line) -> OS:
        return ladder(self.phase, line.live, line.shipped, line.delivered, line.returned, line.open,
                      line.planned, line.at_nodes, line.ready)

    def active(self) -> bool:
        """A fulfillment is still at work."""
        return any(f.status not in FULFILLMENT_TERMINAL for f in self.fulfillments.values())

    def price(self, line_id: str) -> Decimal:
        """What the customer pays on this order for a unit of the line: a replacement's units are paid, up to
        their value, by the units its exchange returns."""
        line, ex = self.lines[line_id], self.order.exchange_of
        return max(line.unit_price - (ex.credits.get(line_id, Decimal("0")) if ex else Decimal("0")), Decimal("0"))

    def total_amount(self) -> Decimal:
        return cents(sum((self.price(l.line_id) * l.live for l in self.lines.values()), Decimal("0")))

    def promised_by(self) -> Optional[datetime]:
        dates = [l.promised_by for l in self.lines.values() if l.promised_by and l.live > 0]
        return max(dates) if dates else None

    def return_deadline(self) -> Optional[datetime]:
        delivered = [f.delivered_at for f in self.fulfillments.values() if f.delivered_at]
        return max(delivered) + self.order.windows.return_window if delivered else None

    def delivered_at(self) -> Optional[datetime]:
        return max([f.delivered_at for f in self.fulfillments.values() if f.delivered_at]
                   + ([self.digital_at] if self.digital_at else []), default=None)

    def at_risk(self) -> bool:
        return any(f.at_risk for f in self.fulfillments.values() if f.status not in FULFILLMENT_TERMINAL)

    def open_lines(self) -> list[Line]:
        return [l for l in self.lines.values() if l.open > 0]

    def holders(self) -> dict[str, list[datetime]]:
        """Per line, the promised dates of what holds its units (live fulfillments and planned ones): one pass."""
        held: dict[str, list[datetime]] = {}
        for f in self.fulfillments.values():
            if f.status not in FULFILLMENT_FAILED and f.promised_by:
                for l in f.lines:
                    held.setdefault(l.line_id, []).append(f.promised_by)
        for p in self.planned.values():
            if p.promised_by:
                for l in p.lines:
                    held.setdefault(l.line_id, []).append(p.promised_by)
        return held

    def node_of(self, line_id: str) -> Optional[str]:
        """The node that delivered (else holds) this line."""
        best = None
        for f in self.fulfillments.values():
            if any(l.line_id == line_id for l in f.lines):
                if f.status in FULFILLMENT_DELIVERED:
                    return f.node_id
                best = best or f.node_id
        return best

    def backorder(self, line: Line) -> str:
        return line.backorder or self.policy.backorder

    def is_b2b(self) -> bool:
        return self.order.requested_delivery_date is not None or self.order.customer.tier == "b2b"

    # ------------------------------------------------------------------ the timeline
    def note(self, event: str, detail: dict[str, Any]) -> None:
        self.ids.timeline += 1
        self.timeline.append(TimelineEntry(key=f"o{self.ids.timeline}", at=workflow.now(), event=event,
                                           detail=detail))

    def line_state(self, line: Line) -> LineState:
        return LineState(line_id=line.line_id, sku=line.sku, qty=line.qty, unit_price=line.unit_price,
                         delivery=line.delivery, status=self.line_status(line).value, cancelled_qty=line.cancelled,
                         shipped_qty=line.shipped, delivered_qty=line.delivered, returned_qty=line.returned,
                         promised_by=line.promised_by, digital=line.digital, uom=line.uom, pack=line.pack)

    def line_updates(self, lines: list[Line]) -> LineUpdates:
        return LineUpdates(
            line_id=[l.line_id for l in lines], status=[self.line_status(l).value for l in lines],
            qty=[l.qty for l in lines], cancelled_qty=[l.cancelled for l in lines],
            shipped_qty=[l.shipped for l in lines], delivered_qty=[l.delivered for l in lines],
            returned_qty=[l.returned for l in lines], promised_by=[l.promised_by for l in lines],
            digital=[l.digital for l in lines])


def ladder(phase: OS, live: int, shipped: int, delivered: int, returned: int, open_: int, planned: int,
           at_nodes: int, ready: int = 0) -> OS:
    """The status of a line, or of the order from its sums: the furthest rung its units have all reached."""
    if phase != OS.released:
        return OS.cancelled if live <= 0 and phase != OS.rejected else phase
    if live <= 0:
        return OS.cancelled
    if returned:
        return OS.returned if returned >= live else OS.partially_returned
    if delivered >= live:
        return OS.delivered
    if ready and delivered + ready >= live:
        return OS.ready_for_pickup  # what is not in the customer's hands waits for them at the counter
    if shipped >= live:
        return OS.shipped
    if shipped:
        return OS.partially_shipped
    if open_:
        return OS.backordered
    if planned and not at_nodes:
        return OS.awaiting_release  # preorders or B2B dates before their release day
    return OS.released


def lines_of(items: Iterable[LineQty]) -> dict[str, int]:
    out: dict[str, int] = {}
    for l in items:
        out[l.line_id] = out.get(l.line_id, 0) + l.qty
    return out


_BOOK = TypeAdapter(Book)
