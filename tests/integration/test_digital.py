"""Digital lines (gift cards, licence codes): no node, no reservation; delivered at release, not returnable."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, Net, make_network
from tests.integration.flow import fulfillment, order_status, place, release, walk

pytestmark = pytest.mark.integration


async def digital_sku(api: Api, net: Net) -> str:
    sku = f"{net.prefix}-GIFT"
    await api.ok("PUT", f"/skus/{sku}", json={"name": "Gift card", "weight_kg": 0, "digital": True})
    return sku


def line(sku: str, qty: int, net: Net, line_id: str = "L1") -> dict:
    return {"line_id": line_id, "sku": sku, "qty": qty, "unit_price": "10.00",
            "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}


async def reservations(db, order_id: str) -> list[tuple[str, str, int]]:
    async with db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(
            "SELECT line_id, status, qty FROM reservations WHERE order_id = :o ORDER BY line_id"),
            {"o": order_id})).all()]


async def notifications(db, order_id: str) -> dict[str, int]:
    async with db.engine.connect() as conn:
        return {r.e: r.n for r in (await conn.execute(text(
            "SELECT response->>'event' AS e, COUNT(*) AS n FROM adapter_calls WHERE system = 'notifications'"
            " AND response->>'order_id' = :o GROUP BY 1"), {"o": order_id})).all()}


async def test_a_mixed_order_delivers_its_digital_line_at_release_and_ships_the_rest(
        api: Api, temporal_env, settings, db):
    net = await make_network(api)
    gift = await digital_sku(api, net)
    body = {"channel": net.channel, "lines": [{k: v for k, v in l.items() if k != "unit_price"}
                                              for l in (line(net.skus[0], 1, net), line(gift, 2, net, "L2"))]}
    sim = await api.ok("POST", "/routing/simulate", key=net.client_key, json=body)
    assert sim["feasible"] and [a["node_id"] for a in sim["allocations"]] == [net.node("DC-N")]
    assert sim["digital"] == [{"line_id": "L2", "sku": gift, "qty": 2}] and sim["unfilled"] == []

    placed = await place(api, net, [("SKU1", 1), ("GIFT", 2)])
    oid = placed["order_id"]
    promised = {l["line_id"]: l["promised_by"] for l in placed["promise"]["lines"]}
    assert promised["L2"] and promised["L2"] < promised["L1"]  # at the remorse window's end
    order = await api.ok("GET", f"/orders/{oid}")
    assert {l["line_id"]: l["digital"] for l in order["lines"]} == {"L1": False, "L2": True}
    assert await reservations(db, oid) == [("L1", "held", 1)]  # nothing held for the gift card

    order = await release(api, temporal_env, oid, settings)
    lines = {l["line_id"]: l for l in order["lines"]}
    assert lines["L2"]["status"] == "delivered" and lines["L2"]["delivered_qty"] == 2
    assert lines["L1"]["status"] == "released"
    assert order["status"] == "partially_shipped"
    assert [f["lines"][0]["line_id"] for f in order["fulfillments"]] == ["L1"]
    captures = [(p["payment_id"], p["amount"]) for p in order["payments"] if p["kind"] == "capture"]
    assert captures == [(f"{oid}:digital:capture", "20.00")]
    event = next(t for t in order["timeline"] if t["event"] == "digital_delivered")
    assert event["detail"] == {"lines": [{"line_id": "L2", "qty": 2}], "amount": "20.00"}
    # Delivered, so there is nothing left of it to cancel.
    r = await api.call("POST", f"/orders/{oid}/cancel", key=net.client_key,
                       json={"lines": [{"line_id": "L2"}], "reason": "changed mind"})
    assert r.status_code == 409, r.text

    dc = net.node("DC-N")
    partner = await api.key("partner", node_id=dc)
    await walk(api, await fulfillment(api, oid, dc), partner)
    order = await order_status(api, oid, "delivered")
    assert sorted(p["amount"] for p in order["payments"] if p["kind"] == "capture") == ["10.00", "20.00"]

    # A digital line cannot come back, and asking changes nothing; the physical one can.
    r = await api.call("POST", f"/orders/{oid}/returns", key=net.client_key,
                       json={"lines": [{"line_id": "L1", "qty": 1}, {"line_id": "L2", "qty": 1}], "reason": "x"})
    assert r.status_code == 409 and "digital lines cannot be returned: L2" in r.json()["detail"]
    assert (await api.ok("GET", f"/orders/{oid}"))["returns"] == []
    await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                 json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
    assert (await notifications(db, oid))["delivered"] == 2  # the gift card, then the parcel


async def test_a_digital_only_order_needs_no_node_and_closes_at_release(api: Api, temporal_env, settings, db):
    net = await make_network(api, stock={})  # no stock anywhere: a digital order does not need any
    gift = await digital_sku(api, net)
    oid = (await place(api, net, [("GIFT", 3)]))["order_id"]
    order = await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key,
                         json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "one too many"})
    assert order["status"] == "awaiting_release"
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window)
    order = await order_status(api, oid, "delivered")
    assert order["fulfillments"] == [] and await reservations(db, oid) == []
    assert order["lines"][0]["delivered_qty"] == 2 and order["lines"][0]["cancelled_qty"] == 1
    assert order["return_deadline"] is None
    # Nothing can be returned, so the order closes at once instead of waiting out a return window.
    await temporal_env.client.get_workflow_handle(oid).result()
    order = await api.ok("GET", f"/orders/{oid}")
    kinds = [(p["kind"], p["amount"]) for p in order["payments"]]
    assert kinds == [("authorization", "30.00"), ("capture", "20.00"), ("void", "10.00")]
    r = await api.call("POST", f"/orders/{oid}/returns", key=net.client_key,
                       json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "x"})
    assert r.status_code == 409
    assert gift == order["lines"][0]["sku"]


async def test_a_modification_can_turn_a_line_digital_or_physical(api: Api, temporal_env, db):
    net = await make_network(api)
    gift = await digital_sku(api, net)
    oid = (await place(api, net, [("GIFT", 1)]))["order_id"]
    assert await reservations(db, oid) == []
    modified = await api.ok("PATCH", f"/orders/{oid}", key=net.client_key,
                            json={"lines": [line(net.skus[0], 1, net)]})
    assert modified["status"] == "awaiting_release"
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["lines"][0]["digital"] is False
    assert await reservations(db, oid) == [("L1", "held", 1)]
    # A modification that cannot be served puts the physical line back as it was.
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key,
                       json={"lines": [line(net.skus[0], 500, net)], "policy": {"fill_or_kill": True}})
    assert r.status_code == 409
    assert (await api.ok("GET", f"/orders/{oid}"))["lines"][0]["digital"] is False
    await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [line(gift, 1, net)]})
    order = await api.ok("GET", f"/orders/{oid}")
    assert order["lines"][0]["digital"] is True and order["lines"][0]["promised_by"]
    assert {s for _, s, _ in await reservations(db, oid)} == {"released"}  # every hold given back


async def test_a_quote_of_digital_lines_needs_no_stock(api: Api):
    net = await make_network(api, stock={})
    gift = await digital_sku(api, net)
    quote = await api.ok("POST", "/promise", key=net.client_key, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code},
        "lines": [{"sku": gift, "qty": 2}], "methods": ["ship_standard"]})
    [option] = quote["options"]
    assert option["complete"] and option["nodes"] == [] and option["lines_available"][0]["qty"] == 2
