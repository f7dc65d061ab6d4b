"""Units of measure: lines ordered by the case or pallet are stocked, reserved and picked in eaches, priced per
case to the cent, and shown in both units; a node that ships only whole cases gets whole cases."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, make_network, order_body
from tests.integration.flow import order_status, release, walk

pytestmark = pytest.mark.integration


async def test_a_case_order_is_eaches_inside_and_cases_outside(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 40, "SKU2": 30}, "DC-S": {"SKU1": 100}})
    sku1, sku2 = net.skus[0], net.skus[1]
    await api.ok("PUT", f"/skus/{sku1}", json={"name": "Gloves", "pack_sizes": {"case": 12, "pallet": 480}})
    await api.ok("PUT", f"/skus/{sku2}", json={"name": "Tape", "pack_sizes": {"case": 12}})
    await api.ok("PATCH", f"/nodes/{net.node('DC-N')}", json={"ships_whole": "case"})
    assert (await api.ok("GET", f"/skus/{sku1}"))["pack_sizes"] == {"case": 12, "pallet": 480}
    # A pallet of loose cases is refused.
    await api.ok("PUT", f"/skus/{sku2}", json={"name": "Tape", "pack_sizes": {"case": 12, "pallet": 100}}, expect=422)

    # A quote shows the cart in its units and in eaches.
    quote = await api.ok("POST", "/promise", key=net.client_key, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code},
        "lines": [{"sku": sku2, "qty": 2, "uom": "case"}], "methods": ["ship_standard"]})
    assert quote["options"][0]["lines_available"] == [
        {"line": 1, "sku": sku2, "uom": "case", "qty": 2, "requested": 2, "eaches": 24, "requested_eaches": 24}]

    # A unit the SKU has no size for is a 422, and no order is made.
    bad = order_body(net, [("SKU2", 1)], customer={"id": "uom-bad"})
    bad["lines"][0]["uom"] = "pallet"
    problem = await api.ok("POST", "/orders", key=net.client_key, json=bad, expect=422)
    assert "has no pallet size" in problem["detail"]
    assert (await api.ok("GET", "/orders?customer_id=uom-bad"))["orders"] == []

    # 2 cases at 100.00 a case: 24 eaches reserved; 100/12 a unit, yet the money is exactly 200.00.
    body = order_body(net, [("SKU2", 2)])
    body["lines"][0].update(uom="case", unit_price="100.00")
    oid = (await api.ok("POST", "/orders", key=net.client_key, json=body, expect=201))["order_id"]
    order = await release(api, temporal_env, oid, settings)
    line = order["lines"][0]
    assert (line["qty"], line["uom"], line["pack"], line["eaches"], line["unit_price"]) == (2, "case", 12, 24, "100.00")
    assert order["total"] == "200.00"
    received = next(t for t in order["timeline"] if t["event"] == "order_received")["detail"]
    assert received["in_packs"] == [{"line_id": "L1", "uom": "case", "qty": 2, "eaches": 24}]
    [f] = order["fulfillments"]
    assert f["node_id"] == net.node("DC-N")
    assert f["lines"] == [{"line_id": "L1", "sku": sku2, "qty": 24, "uom": "case", "uom_qty": 2, "loose": 0}]
    avail = await api.ok("GET", f"/inventory/{net.node('DC-N')}")
    assert next(p for p in avail["items"] if p["sku"] == sku2)["reserved"] == 24
    partner = await api.key("partner", node_id=net.node("DC-N"))
    queue = await api.ok("GET", "/fulfillments", key=partner)
    assert next(x for x in queue["fulfillments"] if x["order_id"] == oid)["lines"][0]["uom_qty"] == 2
    await walk(api, f, partner)
    order = await order_status(api, oid, "delivered")
    money = {(p["kind"], p["status"]): p["amount"] for p in order["payments"]}
    assert money[("authorization", "succeeded")] == "200.00" and money[("capture", "succeeded")] == "200.00"

    # 40 eaches where the near DC ships whole cases only: it sends 36 (3 cases), the far one the 4 left.
    oid = (await api.ok("POST", "/orders", key=net.client_key, json=order_body(net, [("SKU1", 40)]),
                        expect=201))["order_id"]
    order = await release(api, temporal_env, oid, settings)
    sent = {f["node_id"]: f["lines"][0]["qty"] for f in order["fulfillments"]}
    assert sent == {net.node("DC-N"): 36, net.node("DC-S"): 4}
