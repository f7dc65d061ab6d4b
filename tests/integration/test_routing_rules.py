"""Routing rules through the API: versioned, validated, admin-only, and used (and named) by every decision."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, eventually, make_network, order_body
from tests.integration.flow import place

pytestmark = pytest.mark.integration


async def _decision(api: Api, order_id: str) -> dict:
    async def find():
        o = await api.ok("GET", f"/orders/{order_id}")
        return next((t["detail"] for t in o["timeline"] if t["event"] == "routing_decision"), None)
    return await eventually(find, what="the routing decision")


async def test_rules_are_versioned_and_steer_the_next_decision(api: Api):
    net = await make_network(api, stock={"STORE": {"SKU1": 2}, "DC-N": {"SKU1": 5}})
    before = await api.ok("GET", "/routing-rules")
    # Without rules the store next door serves.
    first = (await place(api, net, [("SKU1", 1)]))["order_id"]
    assert [a["node_id"] for a in (await _decision(api, first))["allocations"]] == [net.node("STORE")]
    try:
        # Bad rules and wrong callers change nothing.
        bad = await api.call("PUT", "/routing-rules", json={"priority_groups": [["dc"], ["dc"]]})
        assert bad.status_code == 422 and "one priority group" in bad.text
        assert (await api.call("PUT", "/routing-rules", key=net.client_key, json={})).status_code == 403
        stale = await api.call("PUT", f"/routing-rules?expected_version={before['version'] + 5}", json={})
        assert stale.status_code == 409
        assert (await api.ok("GET", "/routing-rules"))["version"] == before["version"]

        put = await api.ok("PUT", f"/routing-rules?expected_version={before['version']}",
                           json={"min_stock": {"store": 3}, "pick_surcharge": {"store": "1.25"},
                                 "priority_groups": [["store"], ["dc"]]})
        assert put["version"] == before["version"] + 1 and put["rules"]["min_stock"] == {"store": 3}
        assert (await api.ok("GET", "/routing-rules"))["version"] == put["version"]
        assert (await api.ok("GET", f"/routing-rules?version={put['version']}"))["rules"] == put["rules"]

        second = (await place(api, net, [("SKU1", 1)]))["order_id"]
        decision = await _decision(api, second)
        assert decision["rules_version"] == put["version"]
        assert [a["node_id"] for a in decision["allocations"]] == [net.node("DC-N")]
        store = next(c for c in decision["candidates"] if c["node_id"] == net.node("STORE"))
        assert "below the minimum of 3 for a store" in store["reason"]
    finally:
        await api.ok("PUT", "/routing-rules", json=before["rules"])  # the rest of the suite runs without them
    assert (await api.call("GET", "/routing-rules?version=99999")).status_code == 404


async def test_simulate_explains_every_candidate_and_reserves_nothing(api: Api):
    net = await make_network(api, stock={"STORE": {"SKU1": 1}, "DC-N": {"SKU1": 5}, "DC-S": {"SKU1": 5}})
    body = {"channel": net.channel, "lines": [{"sku": net.skus[0], "qty": 3, "delivery": {
        "method": "ship_standard", "address": {"postal_code": net.postal_code}}}]}
    sim = await api.ok("POST", "/routing/simulate", key=net.client_key, json=body)
    assert sim["simulated"] and not sim["reserved"] and sim["feasible"]
    assert [a["node_id"] for a in sim["allocations"]] == [net.node("DC-N")]
    by_node = {c["node_id"]: c for c in sim["candidates"]}
    assert by_node[net.node("DC-N")]["outcome"] == "chosen"
    assert by_node[net.node("DC-S")]["outcome"] == "lost" and "more expensive by" in by_node[net.node("DC-S")]["reason"]
    assert "rules_version" in sim and sim["exact"] is True
    assert float(sim["lower_bound"]) <= float(sim["search_cost"])
    # Nothing was reserved.
    items = (await api.ok("GET", f"/inventory/{net.node('DC-N')}"))["items"]
    assert items[0]["reserved"] == 0
    # Another channel's key, and a bad line: refused, nothing changes.
    other = await api.key("client", channel="someone-else")
    assert (await api.call("POST", "/routing/simulate", key=other, json=body)).status_code == 403
    bad = await api.call("POST", "/routing/simulate", key=net.client_key,
                         json={**body, "lines": [{**body["lines"][0], "sku": "nope"}]})
    assert bad.status_code == 422 and "nope" in bad.text


async def test_daily_order_capacity_sends_the_next_order_elsewhere(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {"SKU1": 5}})
    north = net.node("DC-N")
    node = await api.ok("PATCH", f"/nodes/{north}", json={"capacity": {"orders_per_day": 1}})
    assert node["capacity"]["orders_per_day"] == 1 and node["capacity"]["orders_today"] == 0
    first = (await place(api, net, [("SKU1", 1)]))["order_id"]
    assert [a["node_id"] for a in (await _decision(api, first))["allocations"]] == [north]
    assert (await api.ok("GET", f"/nodes/{north}"))["capacity"]["orders_today"] == 1
    second = (await place(api, net, [("SKU1", 1)]))["order_id"]
    decision = await _decision(api, second)
    assert [a["node_id"] for a in decision["allocations"]] == [net.node("DC-S")]
    assert {c["node_id"]: c["reason"] for c in decision["candidates"]}[north] == "at daily order capacity"


async def test_line_level_sourcing_through_the_order_policy(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {"SKU1": 5, "SKU2": 5}})
    bad = await api.call("POST", "/orders", key=net.client_key,
                         json=order_body(net, [("SKU1", 1)], policy={"sourcing": "sometimes"}))
    assert bad.status_code == 422
    oid = (await place(api, net, [("SKU1", 1), ("SKU2", 1)], policy={"sourcing": "line"}))["order_id"]
    allocations = {a["node_id"]: [l["line_id"] for l in a["lines"]] for a in (await _decision(api, oid))["allocations"]}
    assert allocations == {net.node("DC-N"): ["L1"], net.node("DC-S"): ["L2"]}


async def test_a_stores_hourly_pick_capacity_sends_the_next_order_elsewhere(api: Api):
    """A store picks online orders between walk-in customers: past its units per hour it is offered no more."""
    net = await make_network(api, stock={"STORE": {"SKU1": 20}, "DC-N": {"SKU1": 20}})
    store = net.node("STORE")
    node = await api.ok("PATCH", f"/nodes/{store}", json={"capacity": {"units_per_hour": 3}})
    assert node["capacity"]["units_per_hour"] == 3 and node["capacity"]["used_this_hour"] == 0
    first = (await place(api, net, [("SKU1", 2)]))["order_id"]
    assert [a["node_id"] for a in (await _decision(api, first))["allocations"]] == [store]
    assert (await api.ok("GET", f"/nodes/{store}"))["capacity"]["used_this_hour"] == 2
    # One unit of room left this hour: a two-unit order goes to the DC, a one-unit order still to the store.
    second = (await place(api, net, [("SKU1", 2)]))["order_id"]
    decision = await _decision(api, second)
    assert [a["node_id"] for a in decision["allocations"]] == [net.node("DC-N")]
    third = (await place(api, net, [("SKU1", 1)]))["order_id"]
    assert [a["node_id"] for a in (await _decision(api, third))["allocations"]] == [store]
    fourth = (await place(api, net, [("SKU1", 1)]))["order_id"]
    decision = await _decision(api, fourth)
    assert [a["node_id"] for a in decision["allocations"]] == [net.node("DC-N")]
    assert {c["node_id"]: c["reason"] for c in decision["candidates"]}[store] == "at unit capacity (per day or per hour)"
    # Unlimited again when the limit is cleared.
    assert (await api.ok("PATCH", f"/nodes/{store}", json={"capacity": {"units_per_hour": None}}))["capacity"][
        "units_per_hour"] is None
