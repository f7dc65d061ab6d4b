"""POST /promise: a date per delivery method from a dry run of routing; an order placed on it gets it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.conftest import Api, Net, make_network
from tests.integration.flow import place

pytestmark = pytest.mark.integration


def cart(net: Net, *lines: tuple[str, int], **extra) -> dict:
    return {"channel": net.channel, "destination": {"postal_code": net.postal_code},
            "lines": [{"sku": f"{net.prefix}-{s}", "qty": q} for s, q in lines], **extra}


def by_method(quote: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in quote["options"]:
        out.setdefault(o["method"], []).append(o)
    return out


async def reserved(api: Api, node: str) -> int:
    return sum(i["reserved"] for i in (await api.ok("GET", f"/inventory/{node}"))["items"])


async def test_a_quote_per_method_reserves_nothing_and_the_order_gets_the_quoted_date(api: Api):
    net = await make_network(api, stock={"STORE": {"SKU1": 2}, "DC-N": {"SKU1": 10, "SKU2": 10},
                                         "DC-S": {"SKU2": 10}})
    quote = await api.ok("POST", "/promise", key=net.client_key, json=cart(net, ("SKU1", 1), ("SKU2", 1)))
    options = by_method(quote)
    standard = options["ship_standard"][0]
    assert standard["complete"] and standard["node_id"] == net.node("DC-N") and standard["ship_by"]
    assert standard["carriers"] and standard["from_incoming_supply"] is False
    express = options["ship_express"][0]
    assert express["promised_by"] <= standard["promised_by"]
    # The store hands over the SKU it holds the same day as processing allows; the other comes to it from a DC
    # (ship to store), so the pickup is complete, dated by the transfer's transit.
    pickup = next(o for o in options["pickup"] if o["node_id"] == net.node("STORE"))
    assert pickup["complete"]
    alone = next(o for o in by_method(await api.ok("POST", "/promise", key=net.client_key, json=cart(
        net, ("SKU1", 1))))["pickup"] if o["node_id"] == net.node("STORE"))
    assert alone["complete"] and alone["promised_by"] < standard["promised_by"]
    assert alone["promised_by"] < pickup["promised_by"]
    # Complete options first; a method nobody offers says why.
    assert all(o["complete"] for o in quote["options"][:2])
    assert {u["method"] for u in quote["unavailable"]} >= {"same_day"}
    assert await reserved(api, net.node("DC-N")) == 0 and await reserved(api, net.node("STORE")) == 0

    # An order placed right after the quote is promised the quoted date.
    placed = await place(api, net, [("SKU1", 1), ("SKU2", 1)])
    assert placed["promise"]["promised_by"] == standard["promised_by"]

    # Quotes reuse the node table for a moment, but a node edit through this API applies at once.
    await api.ok("PATCH", f"/nodes/{net.node('DC-N')}", json={"enabled": False})
    again = by_method(await api.ok("POST", "/promise", key=net.client_key, json=cart(net, ("SKU2", 1))))
    assert again["ship_standard"][0]["nodes"] == [net.node("DC-S")]
    # So does a channel view's edit (the same memo holds channel views, rules, service areas and SKUs).
    await api.ok("PUT", f"/channels/{net.channel}", json={"exclude_nodes": [net.node("DC-S")]})
    r = await api.call("POST", "/promise", key=net.client_key, json=cart(net, ("SKU2", 1), methods=["ship_standard"]))
    assert r.status_code == 200 and r.json()["options"] == []
    assert "view;dur=" in r.headers["Server-Timing"] and "plans;dur=" in r.headers["Server-Timing"]
    await api.ok("PUT", f"/channels/{net.channel}", json={})

    # Only the methods asked for; a quote of what nobody holds says so.
    only = await api.ok("POST", "/promise", key=net.client_key,
                        json=cart(net, ("SKU3", 1), methods=["ship_standard"]))
    assert only["options"] == [] and [u["method"] for u in only["unavailable"]] == ["ship_standard"]


async def test_bad_quotes_get_a_clear_4xx(api: Api):
    net = await make_network(api)
    other = await api.key("client", channel="someone-else")
    assert (await api.call("POST", "/promise", key=other, json=cart(net, ("SKU1", 1)))).status_code == 403
    r = await api.call("POST", "/promise", key=net.client_key, json={**cart(net), "lines": [{"sku": "nope", "qty": 1}]})
    assert r.status_code == 422 and "unknown sku nope" in r.text
    r = await api.call("POST", "/promise", key=net.client_key,
                       json={**cart(net, ("SKU1", 1)), "destination": {"postal_code": "00000-nowhere"}})
    assert r.status_code == 422 and "unknown postal code" in r.text
    r = await api.call("POST", "/promise", key=net.client_key, json=cart(net, ("SKU1", 0)))
    assert r.status_code == 422


async def test_a_backorder_is_quoted_from_incoming_supply(api: Api):
    net = await make_network(api, stock={})
    eta = datetime.now(timezone.utc) + timedelta(days=6)
    await api.ok("POST", "/inventory/supply", json=[{"supply_id": f"{net.prefix}-PO1", "node_id": net.node("DC-N"),
                                                      "sku": net.skus[0], "qty": 5, "eta": eta.isoformat()}])
    quote = await api.ok("POST", "/promise", key=net.client_key, json=cart(net, ("SKU1", 2), methods=["ship_standard"]))
    [option] = quote["options"]
    assert option["from_incoming_supply"] and option["complete"]
    assert datetime.fromisoformat(option["promised_by"]) > eta


async def test_a_requested_date_is_promised_and_carrier_closures_move_dates(api: Api):
    net = await make_network(api)
    body = cart(net, ("SKU1", 1), methods=["ship_standard"])
    earliest = (await api.ok("POST", "/promise", key=net.client_key, json=body))["options"][0]["promised_by"]
    wanted = (datetime.fromisoformat(earliest) + timedelta(days=10)).date()
    later = (await api.ok("POST", "/promise", key=net.client_key,
                          json={**body, "requested_delivery_date": wanted.isoformat()}))["options"][0]
    assert later["promised_by"].startswith(wanted.isoformat())
    assert later["ship_by"] > earliest[:10]  # it leaves later, to arrive on the day asked for, not before

    listed = await api.ok("GET", "/carriers")
    assert {c["carrier"] for c in listed["carriers"]} == {"fedex", "ups"}
    assert all(c["holidays"] for c in listed["carriers"])
    today = datetime.now(timezone.utc).date()
    closed = [{"day": (today + timedelta(days=d)).isoformat(), "reason": "storm"} for d in range(0, 8)]
    assert (await api.call("PUT", "/carriers/dhl/closures", json=closed)).status_code == 404
    assert (await api.call("PUT", "/carriers/ups/closures",
                           json=[{"day": (today - timedelta(days=1)).isoformat()}])).status_code == 422
    assert (await api.call("PUT", "/carriers/ups/closures", key=net.client_key, json=closed)).status_code == 403
    try:
        for carrier in ("ups", "fedex"):
            await api.ok("PUT", f"/carriers/{carrier}/closures", json=closed)
        stormy = (await api.ok("POST", "/promise", key=net.client_key, json=body))["options"][0]
        assert stormy["promised_by"][:10] > closed[-1]["day"]  # nothing moves while both are closed
        listed = await api.ok("GET", "/carriers")
        assert len(next(c for c in listed["carriers"] if c["carrier"] == "ups")["closures"]) == 8
    finally:
        for carrier in ("ups", "fedex"):
            await api.ok("PUT", f"/carriers/{carrier}/closures", json=[])
    assert (await api.ok("POST", "/promise", key=net.client_key, json=body))["options"][0]["promised_by"] == earliest


async def test_committed_network_writes_clear_the_quote_memo_and_nothing_else_does(db):
    from sqlalchemy import text

    from routing.store import memo

    loads = []

    async def remembered() -> int:
        async with db.engine.connect() as conn:
            return await memo(conn, "probe", 60, lambda: _load(loads))

    async def write(sql: str, commit: bool = True) -> None:
        async with db.engine.connect() as conn:
            await conn.execute(text(sql))
            await (conn.commit() if commit else conn.rollback())

    await remembered()
    await remembered()
    assert len(loads) == 1  # remembered
    await write("SELECT count(*) FROM nodes")
    await write("UPDATE orders SET status = status WHERE false")
    await write("UPDATE nodes SET name = name WHERE false", commit=False)
    await remembered()
    assert len(loads) == 1, "reads, other tables and rolled-back writes keep the memo"
    for sql in ("UPDATE nodes SET name = name WHERE false", "DELETE FROM service_areas WHERE false",
                "WITH x AS (SELECT 1) INSERT INTO carrier_closures SELECT * FROM carrier_closures WHERE false"):
        await write(sql)
        await remembered()
    assert len(loads) == 4, "each committed network write is seen by the next quote"


async def _load(loads: list) -> int:
    loads.append(1)
    return len(loads)
