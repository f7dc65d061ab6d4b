"""Modify and cancel inside the remorse window; both refused once the order is released."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, make_network
from tests.integration.flow import order_status, place, release

pytestmark = pytest.mark.integration


async def reserved(api: Api, node: str, sku: str) -> int:
    items = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}
    return items[sku]["reserved"] if sku in items else 0


async def test_modify_in_remorse_window_repromises_and_moves_reservations(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc = net.node("DC-N")
    placed = await place(api, net, [("SKU1", 2)])
    oid = placed["order_id"]
    assert await reserved(api, dc, f"{net.prefix}-SKU1") == 2

    new_lines = [{"line_id": "L1", "sku": f"{net.prefix}-SKU1", "qty": 3, "unit_price": "10.00",
                  "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}},
                 {"sku": f"{net.prefix}-SKU2", "qty": 1, "unit_price": "5.00",
                  "delivery": {"method": "ship_express", "address": {"postal_code": net.postal_code}}}]
    modified = await api.ok("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": new_lines})
    assert modified["status"] == "awaiting_release"
    assert modified["promise"]["promised_by"]
    assert await reserved(api, dc, f"{net.prefix}-SKU1") == 3
    assert await reserved(api, dc, f"{net.prefix}-SKU2") == 1
    order = await api.ok("GET", f"/orders/{oid}")
    assert sorted((l["line_id"], l["qty"]) for l in order["lines"]) == [("L1", 3), ("L2", 1)]
    # The bigger total was authorized again and the first authorization voided.
    kinds = [(p["kind"], p["amount"]) for p in order["payments"]]
    assert ("authorization", "20.00") in kinds and ("authorization", "35.00") in kinds and ("void", "20.00") in kinds

    # A modification that cannot be served under its policy changes nothing.
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [
        {"line_id": "L1", "sku": f"{net.prefix}-SKU1", "qty": 500, "unit_price": "10.00",
         "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}],
        "policy": {"fill_or_kill": True}})
    assert r.status_code == 409 and "fill or kill" in r.json()["detail"], r.text
    assert await reserved(api, dc, f"{net.prefix}-SKU1") == 3
    assert await reserved(api, dc, f"{net.prefix}-SKU2") == 1
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [
        {"sku": "no-such-sku", "qty": 1, "unit_price": "1.00",
         "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}]})
    assert r.status_code == 422 and "unknown sku" in r.json()["detail"]

    # After release: 409 and nothing changes.
    await release(api, temporal_env, oid, settings)
    r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": new_lines[:1]})
    assert r.status_code == 409 and "remorse window" in r.json()["detail"]
    order = await api.ok("GET", f"/orders/{oid}")
    assert sorted((l["line_id"], l["qty"]) for l in order["lines"]) == [("L1", 3), ("L2", 1)]


async def test_cancel_in_remorse_window_releases_stock_and_voids(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc = net.node("DC-N")
    oid = (await place(api, net, [("SKU1", 2), ("SKU2", 1)]))["order_id"]
    # Cancel one line first, then the rest.
    await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key,
                 json={"lines": [{"line_id": "L2"}], "reason": "changed mind"})
    assert await reserved(api, dc, f"{net.prefix}-SKU2") == 0
    assert await reserved(api, dc, f"{net.prefix}-SKU1") == 2
    order = await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "changed mind"})
    assert order["status"] == "cancelled"
    assert await reserved(api, dc, f"{net.prefix}-SKU1") == 0
    order = await order_status(api, oid, "cancelled")
    assert [p["kind"] for p in order["payments"]] == ["authorization", "void"]
    assert order["payments"][1]["amount"] == order["payments"][0]["amount"]
    # Cancelling again is a conflict, and the remorse window's end releases nothing.
    r = await api.call("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "again"})
    assert r.status_code == 409
    handle = temporal_env.client.get_workflow_handle(oid)
    await handle.result()
    assert (await api.ok("GET", f"/orders/{oid}"))["fulfillments"] == []
