"""The order lifecycle end to end on the real dev server and Postgres, driven through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, make_network
from tests.integration.flow import fulfillment, order_status, place, release, walk

pytestmark = pytest.mark.integration


async def reservation_statuses(db, order_id: str) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT status FROM reservations WHERE order_id = :o ORDER BY line_id"), {"o": order_id})).scalars())


async def test_full_path_through_refund(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    placed = await place(api, net, [("SKU1", 2), ("SKU2", 1)])
    order_id = placed["order_id"]
    assert placed["status"] == "awaiting_release"
    assert placed["promise"]["promised_by"]

    # Reserved, not yet released; the closest DC holds the stock.
    inv = await api.ok("GET", f"/inventory/{net.node('DC-N')}")
    assert {i["sku"]: i["reserved"] for i in inv["items"]}[f"{net.prefix}-SKU1"] == 2

    order = await release(api, temporal_env, order_id, settings)
    assert order["status"] == "released"
    dc = net.node("DC-N")
    f = await fulfillment(api, order_id, dc)
    partner = await api.key("partner", node_id=dc)
    assert await reservation_statuses(db, order_id) == ["committed", "committed"]
    await walk(api, f, partner)
    assert await reservation_statuses(db, order_id) == ["consumed", "consumed"]
    order = await order_status(api, order_id, "delivered")
    shipped = next(x for x in order["fulfillments"] if x["fulfillment_id"] == f["fulfillment_id"])
    assert shipped["tracking"] and shipped["carrier"]
    inv = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{dc}"))["items"]}
    assert inv[f"{net.prefix}-SKU1"]["on_hand"] == 8 and inv[f"{net.prefix}-SKU1"]["reserved"] == 0

    ret = await api.ok("POST", f"/orders/{order_id}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 2}], "reason": "too small"})
    assert ret["status"] == "requested" and ret["label"]["tracking"]
    body = {"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]}
    received = await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner, json=body)
    assert received["status"] == "refunded" and received["refund_amount"] == "10.00"
    # Receiving again refunds nothing more.
    again = await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner, json=body)
    assert again["status"] == "refunded"

    order = await order_status(api, order_id, "partially_returned")
    kinds = sorted(p["kind"] for p in order["payments"])
    assert kinds == ["authorization", "capture", "refund"]
    assert [p["amount"] for p in order["payments"] if p["kind"] == "capture"] == ["30.00"]
    inv = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{dc}"))["items"]}
    assert inv[f"{net.prefix}-SKU1"]["on_hand"] == 9  # one sellable unit back on the shelf
    events = [t["event"] for t in order["timeline"]]
    for e in ("order_received", "routing_decision", "payment_authorized", "awaiting_release", "released",
              "fulfillment_accepted", "fulfillment_shipped", "fulfillment_delivered", "return_requested",
              "return_received", "refunded"):
        assert e in events, e
    decision = next(t for t in order["timeline"] if t["event"] == "routing_decision")
    verdicts = {c["node_id"]: c for c in decision["detail"]["candidates"]}
    assert verdicts[dc]["outcome"] == "chosen"
    assert verdicts[net.node("DC-S")]["outcome"] == "lost"
    assert "more expensive" in verdicts[net.node("DC-S")]["reason"]
    assert verdicts[net.node("STORE")]["outcome"] == "ineligible"

    # Notifications went out once per event.
    async with db.engine.connect() as conn:
        sent = (await conn.execute(text(
            "SELECT response->>'event' AS e, COUNT(*) AS n FROM adapter_calls WHERE system = 'notifications'"
            " AND response->>'order_id' = :o GROUP BY 1"), {"o": order_id})).all()
    assert dict((r.e, r.n) for r in sent) == {"confirmed": 1, "released": 1, "shipped": 1, "delivered": 1, "refunded": 1}

    # The order closes when the return window ends, and then a return is refused.
    handle = temporal_env.client.get_workflow_handle(order_id)
    await temporal_env.fast_forward(handle, settings.return_window + timedelta(days=1))
    r = await api.call("POST", f"/orders/{order_id}/returns", key=net.client_key,
                       json={"lines": [{"line_id": "L2", "qty": 1}], "reason": "late"})
    assert r.status_code == 409, r.text
    closed = [p for p in (await api.ok("GET", f"/orders/{order_id}"))["payments"] if p["kind"] == "void"]
    assert closed == []  # everything authorized was captured: nothing to void
