"""Exchanges on the real stack: the returned units pay for a replacement order, linked to the original on both
timelines. Even (the replacement waits for the return), advance (it ships first; the return closes it, or the
customer is charged when it never comes), a price difference charged or refunded, and a replacement nothing can
serve refused with nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, eventually, make_network
from tests.integration.flow import fulfillment, order_status, released_to, walk

pytestmark = pytest.mark.integration


async def delivered_order(api: Api, env, settings, net, lines=(("SKU1", 2),)) -> str:
    oid, f = await released_to(api, env, settings, net, list(lines))
    await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
    await order_status(api, oid, "delivered")
    return oid


async def available(api: Api, node: str, sku: str) -> int:
    items = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}
    return items[sku]["available"]


def payments(order: dict, kind: str) -> list[str]:
    return [p["amount"] for p in order["payments"] if p["kind"] == kind and p["status"] == "succeeded"]


def events(order: dict, event: str) -> list[dict]:
    return [t["detail"] for t in order["timeline"] if t["event"] == event]


async def test_even_exchange_ships_the_replacement_once_the_return_arrives(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid = await delivered_order(api, temporal_env, settings, net)
    dc, sku2 = net.node("DC-N"), f"{net.prefix}-SKU2"
    before = await available(api, dc, sku2) + await available(api, net.node("DC-S"), sku2)
    x = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 1, "sku": sku2}], "reason": "wrong size", "method": "ship_back"})
    rid, xid = x["replacement_order_id"], x["exchange_id"]
    assert x["return_id"] and x["replacement_status"] == "awaiting_release"
    # Reserved like an order the moment it is promised: one unit of SKU2 fewer to sell.
    assert await available(api, dc, sku2) + await available(api, net.node("DC-S"), sku2) == before - 1
    replacement = await api.ok("GET", f"/orders/{rid}", key=net.client_key)
    assert replacement["promised_by"] and replacement["lines"][0]["sku"] == sku2
    assert events(replacement, "exchange_of")[0] == {"order_id": oid, "exchange_id": xid, "return_id": x["return_id"],
                                                      "advance": False}
    assert payments(replacement, "authorization") == []  # the returned unit pays for it whole
    original = await api.ok("GET", f"/orders/{oid}")
    assert events(original, "exchange_requested")[0]["replacement_order_id"] == rid
    assert [r["return_id"] for r in original["returns"]] == [x["return_id"]]
    # Waiting for the return: not released however long its own clock runs.
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(rid), timedelta(days=3))
    assert (await api.ok("GET", f"/orders/{rid}"))["fulfillments"] == []

    got = await api.ok("POST", f"/returns/{x['return_id']}/receive",
                       json={"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]})
    assert got["status"] == "refunded" and got["refund_amount"] == "0.00"  # an even exchange: nothing to refund
    f = await fulfillment(api, rid, dc)
    await walk(api, f, await api.key("partner", node_id=dc))
    replacement = await order_status(api, rid, "delivered")
    assert payments(replacement, "capture") in ([], ["0.00"])
    original = await api.ok("GET", f"/orders/{oid}")
    assert payments(original, "refund") == []
    assert events(original, "exchange_returned")[0]["settled"] == "0.00"
    # A retried request (the same Idempotency-Key) answers the same exchange: nothing made twice.
    body = {"lines": [{"line_id": "L1", "qty": 1, "sku": sku2}], "reason": "again", "advance": True}
    first = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, json=body, expect=201,
                         headers={"Idempotency-Key": "exchange-" + xid})
    second = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, json=body, expect=(200, 201),
                          headers={"Idempotency-Key": "exchange-" + xid})
    assert second["exchange_id"] == first["exchange_id"] != xid
    assert len((await api.ok("GET", f"/orders/{oid}"))["returns"]) == 2


async def test_advance_exchange_charges_the_difference_and_the_return_closes_it(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    oid = await delivered_order(api, temporal_env, settings, net)
    dc, sku3 = net.node("DC-N"), f"{net.prefix}-SKU3"
    x = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 2, "sku": sku3, "unit_price": "12.50"}], "reason": "colour",
        "advance": True})
    rid = x["replacement_order_id"]
    # Ships before the return arrives, the card asked only for the difference (2 × 2.50).
    f = await fulfillment(api, rid, dc)
    replacement = await api.ok("GET", f"/orders/{rid}")
    assert payments(replacement, "authorization") == ["5.00"]
    await walk(api, f, await api.key("partner", node_id=dc))
    replacement = await order_status(api, rid, "delivered")
    assert payments(replacement, "capture") == ["5.00"]
    got = await api.ok("POST", f"/returns/{x['return_id']}/receive",
                       json={"lines": [{"line_id": "L1", "qty": 2, "disposition": "sellable"}]})
    assert got["refund_amount"] == "0.00"
    original = await order_status(api, oid, "returned")
    assert payments(original, "refund") == [] and payments(original, "capture") == ["20.00"]
    # The window's end passes with the exchange closed: nothing more is charged.
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.return_window)
    original = await api.ok("GET", f"/orders/{oid}")
    assert payments(original, "capture") == ["20.00"] and not events(original, "exchange_charged")


async def test_a_cheaper_replacement_refunds_the_difference_at_receipt(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid = await delivered_order(api, temporal_env, settings, net)
    x = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 2, "sku": f"{net.prefix}-SKU2", "unit_price": "7.00"}], "reason": "cheaper",
        "advance": True})
    got = await api.ok("POST", f"/returns/{x['return_id']}/receive",
                       json={"lines": [{"line_id": "L1", "qty": 2, "disposition": "damaged"}]})
    assert got["refund_amount"] == "6.00"  # 2 × (10.00 − 7.00)
    original = await api.ok("GET", f"/orders/{oid}")
    assert payments(original, "refund") == ["6.00"]


async def test_advance_exchange_never_returned_is_charged_and_an_even_one_called_off(
        api: Api, temporal_env, settings, db):
    net = await make_network(api)
    oid = await delivered_order(api, temporal_env, settings, net, lines=(("SKU1", 2), ("SKU2", 1)))
    dc, sku3 = net.node("DC-N"), f"{net.prefix}-SKU3"
    advance = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 1, "sku": sku3}], "reason": "size", "advance": True})
    even = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L2", "qty": 1, "sku": sku3}], "reason": "size"})
    f = await fulfillment(api, advance["replacement_order_id"], dc)
    await walk(api, f, await api.key("partner", node_id=dc))
    held = await available(api, dc, sku3) + await available(api, net.node("DC-S"), sku3)

    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.return_window + timedelta(hours=1))
    original = await eventually(lambda: _with_event(api, oid, "exchange_charged"), what="the advance exchange charged")
    assert events(original, "exchange_charged")[0]["amount"] == "10.00"
    assert sorted(payments(original, "capture")) == ["10.00", "30.00"]
    assert events(original, "exchange_void")[0]["replacement_order_id"] == even["replacement_order_id"]
    # The even exchange's replacement never shipped: cancelled, its unit back on sale.
    await order_status(api, even["replacement_order_id"], "cancelled")
    assert await available(api, dc, sku3) + await available(api, net.node("DC-S"), sku3) == held + 1
    async with db.engine.connect() as conn:
        sent = (await conn.execute(text(
            "SELECT COUNT(*) FROM adapter_calls WHERE system = 'notifications' AND response->>'order_id' = :o"
            " AND response->>'event' = 'exchange_charged'"), {"o": oid})).scalar_one()
    assert sent == 1
    # With both exchanges closed the original order closes at the window's end.
    await order_status(api, oid, "delivered")


async def _with_event(api: Api, oid: str, event: str):
    o = await api.ok("GET", f"/orders/{oid}")
    return o if events(o, event) else None


async def test_an_exchange_nothing_can_serve_is_refused_and_changes_nothing(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}})
    oid = await delivered_order(api, temporal_env, settings, net)
    for body, status, why in (
            ({"lines": [{"line_id": "L1", "qty": 1, "sku": f"{net.prefix}-SKU2"}]}, 409, "cannot be served"),
            ({"lines": [{"line_id": "L1", "qty": 1, "sku": "NO-SUCH-SKU"}]}, 422, "unknown sku"),
            ({"lines": [{"line_id": "L1", "qty": 3, "sku": f"{net.prefix}-SKU1"}]}, 409, "delivered units"),
            ({"lines": [{"line_id": "L1", "qty": 1, "sku": f"{net.prefix}-SKU1"}], "method": "in_store",
              "node_id": net.node("DC-N")}, 422, "does not take in store returns")):
        r = await api.call("POST", f"/orders/{oid}/exchanges", key=net.client_key, json={"reason": "x", **body})
        assert r.status_code == status and why in r.json()["detail"], (body, r.text)
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["returns"] == [] and not events(order, "exchange_requested")
    # Like for like from stock is fine.
    await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 1, "sku": f"{net.prefix}-SKU1"}], "reason": "faulty", "advance": True})


async def test_a_replacement_cancelled_after_its_original_closed_is_cancelled_all_the_same(
        api: Api, temporal_env, settings):
    """The replacement tells the original it was cancelled; the original has closed (its exchange charged):
    the signal finds nobody, and the replacement still ends as asked."""
    net = await make_network(api)
    oid = await delivered_order(api, temporal_env, settings, net)
    x = await api.ok("POST", f"/orders/{oid}/exchanges", key=net.client_key, expect=201, json={
        "lines": [{"line_id": "L1", "qty": 1, "sku": f"{net.prefix}-SKU2"}], "reason": "size", "advance": True})
    rid = x["replacement_order_id"]
    await fulfillment(api, rid, net.node("DC-N"))  # released, never accepted
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.return_window + timedelta(hours=1))
    await temporal_env.client.get_workflow_handle(oid).result()  # closed
    done = await api.ok("POST", f"/orders/{rid}/cancel", key=await api.key("support"), json={"reason": "lost"})
    assert done["status"] == "cancelled"
    assert [t for t in (await api.ok("GET", f"/orders/{oid}"))["timeline"] if t["event"] == "exchange_charged"]
