"""Order files: a CSV of order lines and an X12 850, each order taken or refused on its own, idempotent by
channel + external id."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.conftest import Api, eventually, make_network
from tests.unit.test_x12 import interchange, purchase_order

pytestmark = pytest.mark.integration

HEADER = "external_id,channel,customer_id,line_id,sku,qty,uom,unit_price,postal_code,address_line1,requested_delivery_date"


async def post_file(api: Api, key: str, body: str, kind: str, expect: int = 200, **params) -> dict:
    r = await api.client.post("/orders/import", content=body.encode(), params=params,
                              headers={"Authorization": f"Bearer {key}", "Content-Type": kind})
    assert r.status_code == expect, r.text
    return r.json()


async def promised(api: Api, order_id: str) -> dict:
    async def check():
        o = await api.ok("GET", f"/orders/{order_id}")
        return o if o["status"] == "awaiting_release" else None
    return await eventually(check, what=f"{order_id} promised")


async def test_a_csv_places_each_order_on_its_own(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 100, "SKU2": 100}})
    s1, s2 = net.skus[0], net.skus[1]
    await api.ok("PUT", f"/skus/{s1}", json={"name": "Gloves", "pack_sizes": {"case": 12}})
    po = uuid.uuid4().hex[:6]
    rows = [HEADER,
            f"A-{po},{net.channel},acme,L1,{s1},2,case,120.00,{net.postal_code},1 Main St,",  # row 2
            f"B-{po},{net.channel},acme,L1,{s2},1,,9.99,{net.postal_code},9 Elm St,",  # row 3
            f"A-{po},{net.channel},acme,L2,{s2},5,,9.99,{net.postal_code},1 Main St,",  # row 4
            f"B-{po},{net.channel},acme,L2,NO-SUCH-SKU,1,,9.99,{net.postal_code},9 Elm St,",  # row 5
            f"B-{po},{net.channel},acme,L3,{s2},many,,9.99,{net.postal_code},9 Elm St,",  # row 6
            f"C-{po},{net.channel},acme,L1,{s2},3,pallet,9.99,{net.postal_code},1 Main St,"]  # row 7
    answer = await post_file(api, net.client_key, "\n".join(rows) + "\n", "text/csv")
    by_id = {o["external_id"]: o for o in answer["orders"]}
    assert (answer["created"], answer["existing"], answer["rejected"]) == (1, 0, 2)
    assert by_id[f"A-{po}"]["status"] == "created"
    assert by_id[f"B-{po}"] == {"external_id": f"B-{po}", "status": "rejected", "order_id": None, "errors": [
        {"row": 6, "segment": None, "reason": "qty: Input should be a valid integer, unable to parse string as an integer"}]}
    assert by_id[f"C-{po}"]["errors"] == [
        {"row": 7, "segment": None, "reason": f"{s2} has no pallet size: order it in each"}]

    order = await promised(api, by_id[f"A-{po}"]["order_id"])
    assert [(l["line_id"], l["qty"], l["uom"], l["eaches"]) for l in order["lines"]] == [
        ("L1", 2, "case", 24), ("L2", 5, "each", 5)]
    assert order["total"] == "289.95"

    # B's qty fixed, its unknown SKU shows at its row; A, sent again, is the order placed before.
    rows[5] = f"B-{po},{net.channel},acme,L3,{s2},2,,9.99,{net.postal_code},9 Elm St,"
    answer = await post_file(api, net.client_key, "\n".join(rows) + "\n", "text/csv")
    by_id = {o["external_id"]: o for o in answer["orders"]}
    assert by_id[f"A-{po}"]["status"] == "existing"
    assert by_id[f"B-{po}"]["errors"] == [{"row": 5, "segment": None, "reason": "unknown sku NO-SUCH-SKU"}]

    # Whole-file faults place nothing.
    await post_file(api, net.client_key, "external_id,sku\nX,Y\n", "text/csv", expect=422)
    await post_file(api, net.client_key, "{}", "application/json", expect=415)
    # A bare carriage return inside a row (the fuzzer's find) and a NUL byte: unreadable, a 422 that says where.
    for broken in ("\U000b2b48H\u00a7\x1b4\r\U00104e1bY", "external_id,sku\nX\x00,Y\n"):
        answer = await post_file(api, net.client_key, broken, "text/csv", expect=422)
        assert "the CSV" in answer["detail"], answer
    # The same orders with old Mac line ends (\r) and Windows ones (\r\n) are read as the same rows.
    for end in ("\r", "\r\n"):
        again = await post_file(api, net.client_key, end.join(rows) + end, "text/csv")
        assert {o["external_id"]: o["status"] for o in again["orders"]}[f"A-{po}"] == "existing"
    other = await api.key("client", channel=f"{net.channel}-other")
    refused = await post_file(api, other, "\n".join(rows[:2]) + "\n", "text/csv")
    assert refused["orders"][0]["errors"][0]["reason"].startswith("this key places orders for channel")


async def test_an_x12_850_interchange_places_its_purchase_orders(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 100, "SKU2": 100}})
    s1, s2 = net.skus[0], net.skus[1]
    await api.ok("PUT", f"/skus/{s1}", json={"name": "Gloves", "pack_sizes": {"case": 12}})
    po = uuid.uuid4().hex[:6]
    good = [s.replace("60601", net.postal_code) for s in purchase_order(
        1, f"PO-{po}-1", [f"PO1*1*2*CA*120.00**VP*{s1}", f"PO1*2*4*EA*3.25**BP*ACME-1*VP*{s2}"])]
    bad = purchase_order(2, f"PO-{po}-2", [f"PO1*1*2*BX*1.00**VP*{s1}"])
    text = interchange([good, bad], newline="\n")
    answer = await post_file(api, net.client_key, text, "application/edi-x12")
    first, second = answer["orders"]
    assert first["status"] == "created" and second["status"] == "rejected"
    assert second["errors"][0] == {"row": None, "segment": 2 + len(good) + 8,
                                   "reason": "PO103 unit 'BX': accepted are EA, CA, PL"}
    order = await promised(api, first["order_id"])
    assert order["external_id"] == f"PO-{po}-1" and order["customer"]["id"] == "ACME"
    assert order["requested_delivery_date"] == "2026-12-20"
    assert [(l["line_id"], l["sku"], l["qty"], l["uom"], l["eaches"]) for l in order["lines"]] == [
        ("1", s1, 2, "case", 24), ("2", s2, 4, "each", 4)]
    again = await post_file(api, net.client_key, text, "application/edi-x12")
    assert again["orders"][0] == {**first, "status": "existing"}

    broken = await post_file(api, net.client_key, text.replace("IEA*1*", "IEA*2*"), "application/edi-x12", expect=422)
    assert "IEA01 counts 2 functional groups" in broken["detail"]
