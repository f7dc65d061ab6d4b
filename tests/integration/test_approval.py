"""B2B approval on the real stack: an order with policy.approval_required is promised and reserved, then waits
for the buyer's approver (a client key flagged approver, or support) before its remorse window; declined or
left past NODAL_APPROVAL_WINDOW it is cancelled, its stock released and its authorization voided."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.conftest import Api, make_network, order_body
from tests.integration.flow import fulfillment, order_status, release

pytestmark = pytest.mark.integration

APPROVAL = {"approval_required": True}


async def reserved(api: Api, node: str, sku: str) -> int:
    return {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}[sku]["reserved"]


def events(order: dict, event: str) -> list[dict]:
    return [t["detail"] for t in order["timeline"] if t["event"] == event]


async def test_an_order_waits_for_its_approver_then_runs_as_any_other(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc, sku = net.node("DC-N"), f"{net.prefix}-SKU1"
    approver = await api.key("client", channel=net.channel, approver=True)
    placed = await api.ok("POST", "/orders", key=net.client_key, expect=201,
                          json=order_body(net, [("SKU1", 3)], policy=APPROVAL))
    oid = placed["order_id"]
    assert placed["status"] == "awaiting_approval" and placed["promise"]["promised_by"]
    assert await reserved(api, dc, sku) == 3  # its stock is held while it waits
    order = await api.ok("GET", f"/orders/{oid}")
    assert events(order, "approval_requested")[0]["until"]
    # However long the remorse window would have been, nothing is released before approval.
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid), settings.remorse_window * 2)
    assert (await api.ok("GET", f"/orders/{oid}"))["status"] == "awaiting_approval"

    # The buyer's ordinary key may not approve; another channel's approver may not see it.
    r = await api.call("POST", f"/orders/{oid}/approve", key=net.client_key, json={})
    assert r.status_code == 403 and "approver" in r.json()["detail"]
    other = await make_network(api)
    foreign = await api.key("client", channel=other.channel, approver=True)
    assert (await api.call("POST", f"/orders/{oid}/approve", key=foreign, json={})).status_code == 403
    assert (await api.call("POST", f"/orders/{oid}/decline", key=approver, json={})).status_code == 422  # no reason

    approved = await api.ok("POST", f"/orders/{oid}/approve", key=approver, json={"note": "PO 4711"})
    assert approved["status"] == "awaiting_release"
    assert events(approved, "approved")[0]["note"] == "PO 4711"
    again = await api.call("POST", f"/orders/{oid}/approve", key=approver, json={})
    assert again.status_code == 409 and "not awaiting approval" in again.json()["detail"]
    await release(api, temporal_env, oid, settings)
    await fulfillment(api, oid, dc)
    await order_status(api, oid, "released")


async def test_a_declined_order_is_cancelled_and_its_stock_released(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc, sku = net.node("DC-N"), f"{net.prefix}-SKU1"
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                        json=order_body(net, [("SKU1", 2)], policy=APPROVAL)))["order_id"]
    support = await api.key("support")
    declined = await api.ok("POST", f"/orders/{oid}/decline", key=support, json={"reason": "over budget"})
    assert declined["status"] == "cancelled"
    assert events(declined, "declined")[0]["reason"] == "over budget"
    assert await reserved(api, dc, sku) == 0
    kinds = sorted(p["kind"] for p in declined["payments"])
    assert kinds == ["authorization", "void"]


async def test_an_order_not_approved_in_time_expires(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc, sku = net.node("DC-N"), f"{net.prefix}-SKU1"
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                        json=order_body(net, [("SKU1", 2)], policy=APPROVAL)))["order_id"]
    await temporal_env.fast_forward(temporal_env.client.get_workflow_handle(oid),
                                    settings.approval_window + timedelta(minutes=1))
    order = await order_status(api, oid, "cancelled")
    assert events(order, "approval_expired") and "not approved within" in events(order, "cancelled")[0]["reason"]
    assert await reserved(api, dc, sku) == 0
    # Nothing to approve any more.
    r = await api.call("POST", f"/orders/{oid}/approve", json={})
    assert r.status_code == 409
