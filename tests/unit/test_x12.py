"""The X12 850 reader on interchanges as trading partners send them: their own delimiters, a newline after each
segment or none, several purchase orders per interchange; strict about the envelope, per order about the rest."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from nodal import x12


def isa(element: str = "*", component: str = ">", terminator: str = "~", control: str = "000000905") -> str:
    fields = ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "ACMEDIST".ljust(15), "ZZ", "NODAL".ljust(15), "261204",
              "1253", "U", "00401", control, "0", "P", component]
    return element.join(fields) + terminator


def purchase_order(n: int, po: str, lines: list[str], element: str = "*", terminator: str = "~") -> list[str]:
    body = [f"ST*850*{n:04d}", f"BEG*00*SA*{po}**20261204", "N1*BY*Acme Distribution*92*ACME",
            "N1*ST*Acme North*92*0042", "N3*1 Main St", "N4*Chicago*IL*60601*US", "DTM*002*20261220", *lines,
            f"CTT*{len(lines)}"]
    body.append(f"SE*{len(body) + 1}*{n:04d}")
    return [s.replace("*", element) + terminator for s in body]


def interchange(orders: list[list[str]], element: str = "*", terminator: str = "~", newline: str = "") -> str:
    segs = [isa(element, terminator=terminator), f"GS*PO*ACMEDIST*NODAL*20261204*1253*77*X*004010{terminator}"]
    for o in orders:
        segs += o
    segs += [f"GE*{len(orders)}*77{terminator}", f"IEA*1*000000905{terminator}"]
    segs = [s if i == 0 else s.replace("*", element) for i, s in enumerate(segs)]
    return newline.join(segs)


LINES = ["PO1*1*2*CA*120.00**VP*SKU-1*BP*ACME-99", "PO1*2*30*EA*4.5**BP*ACME-7*SK*SKU-2"]


@pytest.mark.parametrize("element,terminator,newline", [("*", "~", ""), ("*", "~", "\r\n"), ("|", "\n", ""),
                                                         ("^", "'", "\n")])
def test_a_purchase_order_reads_the_same_whatever_the_delimiters(element, terminator, newline):
    text = interchange([purchase_order(1, "PO-1001", LINES, element, terminator)], element, terminator, newline)
    parsed = x12.parse(text)
    assert parsed.sender == "ACMEDIST" and parsed.control == "000000905" and len(parsed.sets) == 1
    po = x12.purchase_order(parsed.sets[0], parsed.sender)
    assert po.errors == []
    assert (po.po_number, po.buyer, po.requested_delivery_date) == ("PO-1001", "ACME", date(2026, 12, 20))
    assert po.ship_to == {"name": "Acme North", "location_code": "0042", "line1": "1 Main St", "city": "Chicago",
                          "region": "IL", "postal_code": "60601", "country": "US"}
    assert [(l.line_id, l.qty, l.uom, l.unit_price, l.sku) for l in po.lines] == [
        ("1", 2, "case", Decimal("120.00"), "SKU-1"), ("2", 30, "each", Decimal("4.5"), "SKU-2")]
    assert po.lines[0].segment == 10  # ISA, GS, ST, BEG, N1, N1, N3, N4, DTM, PO1


def test_a_bad_line_rejects_its_purchase_order_only_with_the_segment():
    good = purchase_order(1, "PO-1", LINES)
    bad = purchase_order(2, "PO-2", ["PO1*1*2*BX*10.00**VP*SKU-1", "PO1*2*1.5*EA*1.00**VP*SKU-2"])
    parsed = x12.parse(interchange([good, bad]))
    first, second = (x12.purchase_order(ts, parsed.sender) for ts in parsed.sets)
    assert first.errors == []
    start = 2 + len(good)  # the second ST's position
    assert second.segment == start + 1
    assert second.errors == [(start + 8, "PO103 unit 'BX': accepted are EA, CA, PL"),
                             (start + 9, "PO102 quantity '1.5' is not a positive whole number"),
                             (start + 10, "CTT01 counts 2 lines; the order has 0 PO1 segments"),
                             (start + 1, "no PO1 line items")]


def test_a_wrong_segment_count_rejects_that_set():
    po = purchase_order(1, "PO-1", LINES)
    po[-1] = "SE*99*0001~"
    parsed = x12.parse(interchange([po]))
    assert x12.purchase_order(parsed.sets[0], parsed.sender).errors[0][1] == "SE01 counts 99 segments; the set has 11"


@pytest.mark.parametrize("mangle,reason", [
    (lambda t: t.replace("IEA*1*000000905", "IEA*1*000000906"), "IEA02 control number 000000906 does not match"),
    (lambda t: t.replace("GE*1*77", "GE*2*77"), "GE01 counts 2 transaction sets; the group has 1"),
    (lambda t: t.replace("GE*1*77", "GE*1*78"), "GE02 control number 78 does not match GS06 77"),
    (lambda t: t[:50], "the ISA segment is fixed width"),
    (lambda t: "HELLO" + t, "an interchange starts with an ISA segment"),
    (lambda t: t.replace("SE*11*0001~", ""), "transaction set 0001 has no SE trailer"),
])
def test_a_broken_envelope_rejects_the_file(mangle, reason):
    with pytest.raises(x12.X12Error) as e:
        x12.parse(mangle(interchange([purchase_order(1, "PO-1", LINES)])))
    assert reason in e.value.reason


def test_not_an_original_order_is_refused():
    po = purchase_order(1, "PO-1", LINES)
    po[1] = "BEG*01*SA*PO-1**20261204~"  # a cancellation
    parsed = x12.parse(interchange([po]))
    assert "only an original purchase order" in x12.purchase_order(parsed.sets[0], parsed.sender).errors[0][1]
