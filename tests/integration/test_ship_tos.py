"""Many ship-tos in one order: a distributor's order to several of its sites is routed, shipped and shown per
address, even when two sites share a postal code."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, eventually, make_network, order_body
from tests.integration.flow import b2b_key, release, walk

pytestmark = pytest.mark.integration


async def test_two_ship_tos_in_one_postal_code_are_two_shipments(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 20, "SKU2": 20}})
    body = order_body(net, [("SKU1", 2), ("SKU2", 1), ("SKU1", 3)], customer={"id": "acme", "tier": "b2b"})
    site_a = {"postal_code": net.postal_code, "line1": "1 Main St", "name": "Acme North"}
    site_b = {"postal_code": net.postal_code, "line1": "9 Elm St", "name": "Acme South"}
    for l, site in zip(body["lines"], (site_a, site_a, site_b)):
        l["delivery"] = {"method": "ship_standard", "address": site}
    oid = (await api.ok("POST", "/orders", key=await b2b_key(api, net), json=body, expect=201))["order_id"]
    await release(api, temporal_env, oid, settings)

    async def both_recorded():  # the read model records each fulfillment on its own: wait for the second
        o = await api.ok("GET", f"/orders/{oid}")
        return o if len(o["fulfillments"]) >= 2 and len(o["ship_tos"]) >= 2 else None
    order = await eventually(both_recorded, what="both shipments in the read model")
    shipments = sorted(sorted(l["line_id"] for l in f["lines"]) for f in order["fulfillments"])
    assert shipments == [["L1", "L2"], ["L3"]]  # one node, two places: two parcels

    by_site = {tuple(g["lines"]): g for g in order["ship_tos"]}
    assert set(by_site) == {("L1", "L2"), ("L3",)}
    north, south = by_site[("L1", "L2")], by_site[("L3",)]
    assert north["units"] == 3 and south["units"] == 3 and north["ship_to"] != south["ship_to"]
    assert len(north["fulfillments"]) == 1 and len(south["fulfillments"]) == 1
    assert north["promised_by"] and north["units_by_status"] == {"released": 3}
    assert "Main" not in str(order["ship_tos"])  # a key, not the address again

    partner = await api.key("partner", node_id=net.node("DC-N"))
    first = next(f for f in order["fulfillments"] if f["fulfillment_id"] == south["fulfillments"][0])
    await walk(api, first, partner)

    async def south_delivered():
        o = await api.ok("GET", f"/orders/{oid}")
        site = next(g for g in o["ship_tos"] if g["lines"] == ["L3"])
        return o if site["units_by_status"] == {"delivered": 3} else None
    order = await eventually(south_delivered, what="the south site delivered")
    assert next(g for g in order["ship_tos"] if g["lines"] == ["L1", "L2"])["units_by_status"] == {"released": 3}
