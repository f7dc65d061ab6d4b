"""Keeping the promise: a missed ship-by marks the order at risk (timeline, notification, AtRisk) until it ships."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, eventually, make_network
from tests.integration.flow import released_to, walk
from workflows.common import AT_RISK

pytestmark = pytest.mark.integration


async def order_where(api: Api, order_id: str, at_risk: bool) -> dict | None:
    o = await api.ok("GET", f"/orders/{order_id}")
    return o if o["at_risk"] is at_risk else None


async def test_a_missed_ship_by_puts_the_order_at_risk_until_it_ships(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    dc = net.node("DC-N")
    partner = await api.key("partner", node_id=dc)
    await walk(api, f, partner, upto="pack")
    assert (await api.ok("GET", f"/orders/{oid}"))["at_risk"] is False

    # The node's clock passes the ship-by cutoff with the parcel still on the dock.
    ship_by = datetime.fromisoformat(f["ship_by"])
    child = temporal_env.client.get_workflow_handle(f["fulfillment_id"])
    await temporal_env.fast_forward(child, ship_by - datetime.now(timezone.utc) + timedelta(minutes=5))
    order = await eventually(lambda: order_where(api, oid, True), what="order at risk")
    [late] = order["fulfillments"]
    assert late["at_risk"].startswith("not shipped by its ship-by")
    event = next(t for t in order["timeline"] if t["event"] == "at_risk")
    assert event["detail"]["fulfillment_id"] == f["fulfillment_id"] and event["detail"]["node_id"] == dc
    assert any(t["event"] == "fulfillment_at_risk" for t in order["timeline"])
    listed = await api.ok("GET", f"/orders?at_risk=true&channel={net.channel}")
    assert [o["order_id"] for o in listed["orders"]] == [oid]
    desc = await temporal_env.client.get_workflow_handle(oid).describe()
    assert desc.typed_search_attributes.get(AT_RISK) is True  # support filters on AtRisk = true in the UI

    # Shipping late ends the ship-by risk; the customer heard about it once.
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/ship", key=partner, json={})
    order = await eventually(lambda: order_where(api, oid, False), what="risk cleared")
    assert order["fulfillments"][0]["at_risk"] is None
    assert (await api.ok("GET", f"/orders?at_risk=true&channel={net.channel}"))["orders"] == []
    async with db.engine.connect() as conn:
        sent = (await conn.execute(text(
            "SELECT COUNT(*) FROM adapter_calls WHERE system = 'notifications'"
            " AND response->>'order_id' = :o AND response->>'event' = 'at_risk'"), {"o": oid})).scalar_one()
    assert sent == 1
