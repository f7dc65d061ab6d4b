"""Carrier tracking in (scans: delivered completes a fulfillment, exceptions reship or refund, duplicates and scans
out of order kept once and harmless) and a customer's own tracking page (their order, and no other)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, eventually, make_network, order_body, own_stack
from tests.integration.flow import fulfillment, order_status, place, released_to, walk
from tests.integration.test_store_pickup import made_ready, placed_pickup, sent, STORE_STOCK

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def scan(tracking: str, event: str, minutes: int, **kw) -> dict:
    return {"tracking": tracking, "event": event, "at": (T0 + timedelta(minutes=minutes)).isoformat(), **kw}


async def shipped(api: Api, temporal_env, settings, net, lines=(("SKU1", 2),), **extra) -> tuple[str, dict, str]:
    oid, f = await released_to(api, temporal_env, settings, net, list(lines), **extra)
    partner = await api.key("partner", node_id=net.node("DC-N"))
    await walk(api, f, partner, upto="ship")
    f = await fulfillment(api, oid, net.node("DC-N"), "shipped")
    return oid, f, partner


async def payments(api: Api, oid: str) -> list[tuple[str, str]]:
    return sorted((p["kind"], p["amount"]) for p in (await api.ok("GET", f"/orders/{oid}"))["payments"])


async def test_a_carriers_delivered_scan_completes_the_fulfillment(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    oid, f, partner = await shipped(api, temporal_env, settings, net)
    carrier, tracking = f["carrier"], f["tracking"]
    key = await api.key("carrier", carrier=carrier)
    other = await api.key("carrier", carrier="acme")
    assert (await api.call("POST", f"/carriers/{carrier}/events", key=other,
                           json=[scan(tracking, "delivered", 90)])).status_code == 403
    assert (await api.call("POST", f"/carriers/{carrier}/events", key=partner,
                           json=[scan(tracking, "delivered", 90)])).status_code == 403
    # Out of order (delivered before the scans that led to it) and with a repeat and an unknown parcel.
    got = await api.ok("POST", f"/carriers/{carrier}/events", key=key, json=[
        scan(tracking, "delivered", 90, detail={"proof": "POD-1", "signed_by": "J DOE", "location": "Chicago, IL"}),
        scan(tracking, "in_transit", 10, detail={"location": "Joliet, IL"}),
        scan("NOPE0000", "in_transit", 11)])
    by_event = {r["event"]: r for r in got["results"]}
    assert by_event["delivered"]["applied"] == "delivered" and by_event["delivered"]["outcome"] == "recorded"
    assert by_event["in_transit"]["applied"] is None
    assert [r["outcome"] for r in got["results"] if r["tracking"] == "NOPE0000"] == ["unknown_tracking"]
    again = await api.ok("POST", f"/carriers/{carrier}/events", key=key, json=[
        scan(tracking, "out_for_delivery", 60), scan(tracking, "delivered", 90, detail={"proof": "POD-1"})])
    assert [r["outcome"] for r in again["results"]] == ["recorded", "duplicate"]
    order = await order_status(api, oid, "delivered")
    assert [x["status"] for x in order["fulfillments"]] == ["delivered"]
    # The partner's own word afterwards changes nothing.
    r = await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/deliver", key=partner)
    assert r["changed"] is False
    scans = [t for t in order["timeline"] if t["event"] == "carrier_scan"]
    assert sorted(t["detail"]["event"] for t in scans) == ["delivered", "in_transit", "out_for_delivery"]
    assert all("signed_by" not in str(t["detail"]) for t in scans)  # the signer's name stays with the carrier
    async with db.engine.connect() as conn:
        n = (await conn.execute(text("SELECT COUNT(*) FROM carrier_scans WHERE tracking = :t"), {"t": tracking})).scalar()
        types = [r[0] for r in await conn.execute(text(
            "SELECT type FROM events WHERE order_id = :o AND type = 'fulfillment.tracking'"), {"o": oid})]
    assert n == 3 and len(types) == 3

    # The customer's page: their order's status and the parcel's scans in time order, by email.
    page = await api.ok("GET", f"/track/{oid}?email=Jane.Doe@example.com", key=None)
    assert page["status"] == "delivered" and page["order_id"] == oid
    [parcel] = page["shipments"]
    assert [s["event"] for s in parcel["scans"]] == ["in_transit", "out_for_delivery", "delivered"]
    assert parcel["scans"][0]["location"] == "Joliet, IL"
    text_of_page = str(page)
    assert "jane.doe" not in text_of_page.lower() and "1 Main St" not in text_of_page and "DC-N" not in text_of_page


async def test_a_lost_parcel_is_reshipped_at_no_charge(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    oid, f, partner = await shipped(api, temporal_env, settings, net)
    key = await api.key("carrier", carrier=f["carrier"])
    got = await api.ok("POST", f"/carriers/{f['carrier']}/events", key=key,
                       json=[scan(f["tracking"], "exception", 30, reason="lost", detail={"location": "Memphis hub"})])
    assert got["results"][0]["applied"] == "exception"

    async def reshipment():
        o = await api.ok("GET", f"/orders/{oid}")
        return next((x for x in o["fulfillments"] if x["fulfillment_id"] != f["fulfillment_id"]
                     and x["status"] == "released"), None)
    again = await eventually(reshipment, what="the reshipment released")
    order = await api.ok("GET", f"/orders/{oid}")
    lost = next(x for x in order["fulfillments"] if x["fulfillment_id"] == f["fulfillment_id"])
    assert lost["status"] == "exception" and lost["reason"].startswith("lost")
    node_partner = partner if again["node_id"] == net.node("DC-N") else await api.key("partner", node_id=again["node_id"])
    await walk(api, again, node_partner)
    await order_status(api, oid, "delivered")
    # Charged once: the first parcel's capture; the reshipment captured nothing, nothing was refunded.
    assert await payments(api, oid) == [("authorization", "20.00"), ("capture", "20.00")]
    notes = await sent(db, oid)
    assert notes["shipment_exception"]["reason"] == "lost" and notes["shipment_exception"]["reshipped"] is True
    events = [t["event"] for t in (await api.ok("GET", f"/orders/{oid}"))["timeline"]]
    assert "carrier_exception" in events and "refunded" not in events
    # A scan that comes after (the lost parcel turned up) changes nothing.
    late = await api.ok("POST", f"/carriers/{f['carrier']}/events", key=key, json=[scan(f["tracking"], "delivered", 900)])
    assert late["results"][0]["applied"] is None and late["results"][0]["note"]


async def test_a_damaged_parcel_is_refunded_by_policy_and_a_returned_one_restocked(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    # Three parcels on their way side by side: damaged (refund by policy), refused, returned to sender.
    (oid, f, _), (oid2, f2, _), (oid3, f3, _) = await asyncio.gather(
        shipped(api, temporal_env, settings, net, lines=(("SKU1", 1), ("SKU2", 1)), policy={"carrier_exception": "refund"}),
        shipped(api, temporal_env, settings, net, lines=(("SKU3", 2),)),
        shipped(api, temporal_env, settings, net, lines=(("SKU3", 1),)))
    key = await api.key("carrier", carrier=f["carrier"])
    await api.ok("POST", f"/carriers/{f['carrier']}/events", key=key, json=[scan(f["tracking"], "exception", 30,
                                                                                reason="damaged")])
    order = await order_status(api, oid, "cancelled")
    # Later the damaged parcel comes back to its sender: its units are on the node's books again, to inspect.
    back = await api.ok("POST", f"/carriers/{f['carrier']}/events", key=key,
                        json=[scan(f["tracking"], "returned_to_sender", 600)])
    assert back["results"][0]["applied"] == "restocked"
    again = await api.ok("POST", f"/carriers/{f['carrier']}/events", key=key,
                         json=[scan(f["tracking"], "returned_to_sender", 600)])
    assert again["results"][0]["applied"] is None  # once
    items = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{net.node('DC-N')}"))["items"]}
    assert items[f"{net.prefix}-SKU1"]["pending_inspection"] == 1 and items[f"{net.prefix}-SKU2"]["pending_inspection"] == 1
    assert await payments(api, oid) == [("authorization", "20.00"), ("capture", "20.00"), ("refund", "20.00")]
    assert [t["detail"]["reason"] for t in order["timeline"] if t["event"] == "refunded"] == ["damaged"]

    # Refused at the door: refunded whatever the policy; the parcel comes back to the node, for inspection.
    await api.ok("POST", f"/carriers/{f2['carrier']}/events", key=await api.key("carrier", carrier=f2["carrier"]),
                 json=[scan(f2["tracking"], "exception", 30, reason="refused")])
    await order_status(api, oid2, "cancelled")
    assert ("refund", "20.00") in await payments(api, oid2)
    await api.ok("POST", f"/carriers/{f3['carrier']}/events", key=await api.key("carrier", carrier=f3["carrier"]),
                 json=[scan(f3["tracking"], "returned_to_sender", 30)])
    await order_status(api, oid3, "cancelled")
    items = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{net.node('DC-N')}"))["items"]}
    assert items[f"{net.prefix}-SKU3"]["pending_inspection"] == 1


async def test_a_customer_sees_their_order_and_no_other(api: Api, temporal_env, settings, db, pg_url):
    net = await make_network(api, stock=STORE_STOCK)
    mine = (await place(api, net, [("SKU1", 1)]))["order_id"]
    theirs = (await api.ok("POST", "/orders", key=net.client_key, expect=201, json={
        **order_body(net, [("SKU2", 1)]), "customer": {"id": "c-2", "email": "someone.else@example.com"}}))["order_id"]
    link = (await eventually(lambda: _sent(db, mine, "confirmed"), what="the confirmation"))["track"]
    assert link.startswith(f"/track/{mine}?token=")
    page = await api.ok("GET", link, key=None)
    assert page["order_id"] == mine and page["promised_by"]
    token = link.split("token=")[1]
    for path in (f"/track/{theirs}?token={token}", f"/track/{theirs}?email=jane.doe@example.com",
                 f"/track/{mine}?email=someone.else@example.com", "/track/ORD-NOPE?email=jane.doe@example.com"):
        r = await api.call("GET", path, key=None)
        assert r.status_code == 404 and r.json()["detail"] == "no order with this id for these details", path
    assert (await api.call("GET", f"/track/{mine}", key=None)).status_code == 422

    # A pickup's code shows on the signed link only, while it waits at the counter.
    oid, f = await placed_pickup(api, temporal_env, settings, net, [("SKU1", 1)])
    code = await made_ready(api, db, f, await api.key("partner", node_id=net.node("STORE")), oid)
    link = (await _sent(db, oid, "confirmed"))["track"]
    by_link = await api.ok("GET", link, key=None)
    assert by_link["pickups"][0]["pickup_code"] == code and by_link["pickups"][0]["status"] == "ready_for_pickup"
    by_email = await api.ok("GET", f"/track/{oid}?email=jane.doe@example.com", key=None)
    assert by_email["pickups"][0]["pickup_code"] is None

    # Guessing is slow: past the per-order limit, 429 whoever asks (an API process of its own: its limits are its own).
    async with own_stack(temporal_env, db, pg_url, "nodal-track-limits", track_per_minute=30) as other:
        codes = [(await other.call("GET", f"/track/{theirs}?email=guess{i}@example.com", key=None)).status_code
                 for i in range(40)]
    assert 429 in codes and set(codes) <= {404, 429}


async def _sent(db, order_id: str, event: str):
    return (await sent(db, order_id)).get(event)
