"""Forecast-aware routing in the product: a demand forecast, bid prices re-solved by a schedule, and orders
that leave scarce stock for the customers the forecast says it serves best."""

from __future__ import annotations

import pytest

from launcher.worker import ensure_schedules
from tests.integration.conftest import Api, eventually, make_network
from workflows.bid_prices import BID_PRICE_SCHEDULE

pytestmark = pytest.mark.integration

ST_LOUIS = {"lat": 38.627, "lon": -90.199}  # nearer the Chicago DC than the Dallas one


async def _prices(api: Api, sku: str) -> dict[str, float]:
    return {p["node_id"]: p["price"] for p in (await api.ok("GET", f"/bid-prices?sku={sku}"))["prices"]}


async def test_forecast_prices_scarce_stock_and_routing_leaves_it_for_nearer_demand(
        api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 1}, "DC-S": {"SKU1": 50}})
    sku, north, south = net.skus[0], net.node("DC-N"), net.node("DC-S")
    stl = f"{net.prefix}-63101"
    await api.ok("PUT", "/service-areas", json=[{"postal_code": stl, **ST_LOUIS, "nodes": []}])
    body = {"channel": net.channel, "lines": [{"sku": sku, "qty": 1, "delivery": {
        "method": "ship_standard", "address": {"postal_code": stl}}}]}

    async def simulate() -> dict:
        return await api.ok("POST", "/routing/simulate", key=net.client_key, json=body)

    # No forecast: the last unit in Chicago goes to St. Louis, the nearer of the two.
    assert [a["node_id"] for a in (await simulate())["allocations"]] == [north]

    # Bad forecasts and wrong callers change nothing.
    good = {"horizon_days": 30, "entries": [{"postal_code": net.postal_code, "skus": [sku], "expected": 20}]}
    for bad, says in ((dict(good, entries=[dict(good["entries"][0], postal_code="nowhere")]), "nowhere"),
                      (dict(good, entries=[dict(good["entries"][0], skus=["no-such-sku"])]), "no-such-sku"),
                      (dict(good, entries=[dict(good["entries"][0], skus=[sku, sku])]), "repeat a SKU"),
                      (dict(good, horizon_days=0), "horizon_days"),
                      (dict(good, entries=[dict(good["entries"][0], expected=-1)]), "expected")):
        r = await api.call("PUT", "/forecast", json=bad)
        assert r.status_code == 422 and says in r.text, (says, r.text)
    assert (await api.call("PUT", "/forecast", key=net.client_key, json=good)).status_code == 403
    before = await api.call("GET", "/forecast")
    assert before.status_code == 404 or all(e["skus"] != [sku] for e in before.json()["entries"])

    # Chicago expects 20 orders for the one unit it has; the schedule re-prices at once.
    await ensure_schedules(temporal_env.client, settings)
    put = await api.ok("PUT", "/forecast", json=good)
    assert put["entries"] == 1 and put["bid_price_refresh"] == "triggered"
    shown = await api.ok("GET", "/forecast")
    assert shown["version"] == put["version"] and shown["entries"] == good["entries"]
    try:
        prices = await eventually(lambda: _nonzero(api, sku), what="the bid price of the scarce unit")
        # What Chicago's next customer pays to ship from Dallas instead (~1,280 km), less nothing at Dallas.
        assert 0.3 < prices[north] < 0.6 and south not in prices

        sim = await simulate()
        assert [a["node_id"] for a in sim["allocations"]] == [south]
        assert float(sim["future_cost"]) == 0.0
        lost = next(c for c in sim["candidates"] if c["node_id"] == north)
        assert lost["outcome"] == "lost" and "worth" in lost["reason"] and "forecast demand" in lost["reason"]

        # A Chicago customer still gets the unit next door: its price is what it is worth to them.
        chicago = dict(body, lines=[dict(body["lines"][0], delivery={
            "method": "ship_standard", "address": {"postal_code": net.postal_code}})])
        near = await api.ok("POST", "/routing/simulate", key=net.client_key, json=chicago)
        assert [a["node_id"] for a in near["allocations"]] == [north]
        assert float(near["future_cost"]) == pytest.approx(prices[north], abs=0.01)
    finally:
        # An empty forecast clears every price (the rest of the suite routes on landed cost alone).
        await api.ok("PUT", "/forecast", json={"horizon_days": 1, "entries": []})
        await temporal_env.client.get_schedule_handle(BID_PRICE_SCHEDULE).trigger()
        await eventually(lambda: _cleared(api, sku), what="the prices to be cleared")


async def _nonzero(api: Api, sku: str):
    prices = await _prices(api, sku)
    return prices or None


async def _cleared(api: Api, sku: str):
    return (await _prices(api, sku)) == {} or None
