"""Payment terms: a B2B customer on account is never card-authorized; its open balance plus an order must stay
within its credit limit, or the order waits for an approver with the reason; each shipment is invoiced."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, make_network, order_body
from tests.integration.flow import b2b_key, order_status, release, walk

pytestmark = pytest.mark.integration


def body_line(order: dict) -> dict:
    l = order["lines"][0]
    return {"line_id": l["line_id"], "sku": l["sku"], "unit_price": l["unit_price"], "delivery": l["delivery"]}


def held_because(order: dict) -> str:
    return next(t for t in order["timeline"] if t["event"] == "approval_requested")["detail"]["reason"]


async def test_orders_on_account_are_credit_checked_and_invoiced(api: Api, temporal_env, settings, db):
    net = await make_network(api, stock={"DC-N": {"SKU1": 100}})
    key = await b2b_key(api, net)
    customer = {"id": f"acme-{uuid.uuid4().hex[:6]}", "tier": "b2b",
                "account": {"terms": "net30", "credit_limit": "500.00"}}

    async def place(units: int, price: str) -> dict:
        body = order_body(net, [("SKU1", units)], customer=customer)
        body["lines"][0]["unit_price"] = price
        oid = (await api.ok("POST", "/orders", key=key, json=body, expect=201))["order_id"]
        return await api.ok("GET", f"/orders/{oid}")

    first = await place(10, "30.00")  # 300.00 of 500.00
    assert first["status"] == "awaiting_release" and first["customer"]["terms"] == "net30"
    assert first["payments"] == []  # no card authorization
    checked = next(t for t in first["timeline"] if t["event"] == "credit_checked")["detail"]
    assert checked["ok"] is True and checked["open_balance"] == "0.00"

    # The first is open: 300.00 + 250.00 is over the limit. Held for an approver, with the reason.
    second = await place(10, "25.00")
    assert second["status"] == "awaiting_approval"
    assert held_because(second) == "credit limit 500.00 exceeded: open balance 300.00 + this order 250.00"
    await api.ok("POST", f"/orders/{second['order_id']}/decline", json={"reason": "over the limit"})
    await order_status(api, second["order_id"], "cancelled")

    order = await release(api, temporal_env, first["order_id"], settings)
    partner = await api.key("partner", node_id=net.node("DC-N"))
    await walk(api, order["fulfillments"][0], partner)
    order = await order_status(api, first["order_id"], "delivered")
    [invoice] = order["payments"]
    assert (invoice["kind"], invoice["amount"], invoice["status"]) == ("invoice", "300.00", "succeeded")
    assert invoice["fulfillment_id"] == order["fulfillments"][0]["fulfillment_id"]
    # A return is credited on the account; neither it nor the invoice went to the card gateway.
    ret = await api.ok("POST", f"/orders/{first['order_id']}/returns", key=key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 2}], "reason": "damaged"})
    await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner,
                 json={"lines": [{"line_id": "L1", "qty": 2, "disposition": "damaged"}]})
    order = await order_status(api, first["order_id"], "partially_returned")
    assert ("refund", "60.00") in {(p["kind"], p["amount"]) for p in order["payments"]}
    async with db.engine.connect() as conn:
        gateway = (await conn.execute(text(
            "SELECT COUNT(*) FROM adapter_calls WHERE system = 'payments' AND idempotency_key LIKE :o"),
            {"o": f"%{first['order_id']}%"})).scalar_one()
    assert gateway == 0

    # Delivered, but its invoice is not due for 30 days: it still counts, less the return's credit.
    third = await place(10, "27.00")
    assert held_because(third) == "credit limit 500.00 exceeded: open balance 240.00 + this order 270.00"
    await api.ok("POST", f"/orders/{third['order_id']}/decline", json={"reason": "over the limit"})
    await order_status(api, third["order_id"], "cancelled")
    fourth = await place(5, "30.00")  # 240.00 + 150.00 fits
    assert fourth["status"] == "awaiting_release"
    # Raised to 300.00 in its remorse window, it would not: the change is refused and nothing changes.
    line = {k: v for k, v in body_line(fourth).items()}
    await api.ok("PATCH", f"/orders/{fourth['order_id']}", key=key, expect=409,
                 json={"lines": [{**line, "qty": 10}]})
    after = await api.ok("GET", f"/orders/{fourth['order_id']}")
    assert after["lines"][0]["qty"] == 5 and after["total"] == "150.00"
    assert "credit limit 500.00 exceeded" in next(
        t for t in after["timeline"] if t["event"] == "payment_declined")["detail"]["reason"]

    # A card customer of the same channel is authorized as before.
    card = await api.ok("POST", "/orders", key=key, json=order_body(net, [("SKU1", 1)]), expect=201)
    card = await api.ok("GET", f"/orders/{card['order_id']}")
    assert [p["kind"] for p in card["payments"]] == ["authorization"] and card["customer"]["terms"] is None
