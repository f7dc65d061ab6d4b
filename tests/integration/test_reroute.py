"""Rerouting: a node that rejects or does not accept in time loses the fulfillment; short picks are re-sourced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api, eventually, make_network, temporal_cli
from tests.integration.flow import fulfillment, order_status, place, release, released_to, walk

pytestmark = pytest.mark.integration


async def inventory(api: Api, node: str) -> dict:
    return {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}


async def test_a_replacement_that_would_miss_the_promise_by_ground_goes_express(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid = (await place(api, net, [("SKU1", 2)]))["order_id"]
    await release(api, temporal_env, oid, settings)
    north, south = net.node("DC-N"), net.node("DC-S")
    f1 = await fulfillment(api, oid, north)
    first = f1["promised_by"]
    await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/reject", key=await api.key("partner", node_id=north),
                 json={"reason": "damaged stock"})
    f2 = await fulfillment(api, oid, south)
    # Dallas by ground would arrive days late (the previous test); by express it keeps Chicago's date.
    assert f1["method"] == "ship_standard" and f2["method"] == "ship_express"
    assert f2["promised_by"] <= first
    order = await api.ok("GET", f"/orders/{oid}")
    reroute = [t for t in order["timeline"] if t["event"] == "routing_decision"][-1]["detail"]
    assert reroute["allocations"][0]["node_id"] == south and reroute["allocations"][0]["expedited"] == "ship_express"
    assert not any(t["event"] == "repromised" for t in order["timeline"])
    assert order["promised_by"] <= first and order["lines"][0]["delivery"]["method"] == "ship_standard"


async def test_reroute_on_rejection_excludes_the_node(api: Api, temporal_env, settings, db):
    net = await make_network(api)
    # Not expedited (the next test): the replacement goes by ground, and its date moves.
    oid = (await place(api, net, [("SKU1", 2)], policy={"expedite": False}))["order_id"]
    await release(api, temporal_env, oid, settings)
    north, south = net.node("DC-N"), net.node("DC-S")
    f1 = await fulfillment(api, oid, north)
    partner_n = await api.key("partner", node_id=north)
    await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/reject", key=partner_n,
                 json={"reason": "damaged stock"})
    f2 = await fulfillment(api, oid, south)
    assert (await inventory(api, north))[f"{net.prefix}-SKU1"]["reserved"] == 0
    assert (await inventory(api, south))[f"{net.prefix}-SKU1"]["reserved"] == 2
    order = await api.ok("GET", f"/orders/{oid}")
    statuses = {f["fulfillment_id"]: f["status"] for f in order["fulfillments"]}
    assert statuses[f1["fulfillment_id"]] == "rejected"
    reroute = [t for t in order["timeline"] if t["event"] == "routing_decision"][-1]
    verdict = {c["node_id"]: c for c in reroute["detail"]["candidates"]}[north]
    assert verdict["outcome"] == "ineligible" and "excluded" in verdict["reason"]
    # Dallas cannot keep Chicago's date: the decision says so, and the timeline shows the date moving.
    chosen = {c["node_id"]: c for c in reroute["detail"]["candidates"]}[south]
    assert chosen["outcome"] == "chosen" and "after the promise" in chosen["reason"]
    moved = next(t["detail"] for t in order["timeline"] if t["event"] == "repromised")
    assert moved["lines"] == ["L1"] and moved["old"] < moved["new"] and moved["reason"].startswith("rejected")
    # The read model keeps the first promise beside the latest (the KPIs count "on time" against the first).
    async with db.engine.connect() as conn:
        first, latest = (await conn.execute(text("SELECT first_promised_by, promised_by FROM orders WHERE order_id = :o"),
                                            {"o": oid})).one()
    assert first.isoformat() == moved["old"] and latest.isoformat() == moved["new"]
    # Rejecting again is a no-op; the old node cannot act on the lost fulfillment any more.
    again = await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/reject", key=partner_n, json={"reason": "x"})
    assert again["changed"] is False
    r = await api.call("POST", f"/fulfillments/{f1['fulfillment_id']}/accept", key=partner_n)
    assert r.status_code == 409
    await walk(api, f2, await api.key("partner", node_id=south))
    await order_status(api, oid, "delivered")
    # The partner scorecards say what happened.
    north_card = (await api.ok("GET", f"/nodes/{north}"))["scorecard"]
    assert north_card["acceptance_rate"] == 0.0 and north_card["rejection_reasons"] == {"damaged stock": 1}
    south_card = (await api.ok("GET", f"/nodes/{south}"))["scorecard"]
    assert (south_card["acceptance_rate"], south_card["fill_rate"], south_card["on_time_ship_rate"]) == (1.0, 1.0, 1.0)
    assert south_card["avg_minutes_to_accept"] is not None and not south_card["flagged_for_offboarding"]


async def test_reroute_on_acceptance_timeout(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f1 = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    child = temporal_env.client.get_workflow_handle(f1["fulfillment_id"])
    await temporal_env.fast_forward(child, settings.accept_timeout + timedelta(minutes=1))
    await fulfillment(api, oid, net.node("DC-N"), status="timed_out")
    f2 = await fulfillment(api, oid, net.node("DC-S"))
    assert f2["fulfillment_id"] != f1["fulfillment_id"]
    assert (await inventory(api, net.node("DC-N")))[f"{net.prefix}-SKU1"]["reserved"] == 0


async def test_short_pick_resources_the_rest(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid = (await place(api, net, [("SKU1", 3)]))["order_id"]
    await release(api, temporal_env, oid, settings)
    north = net.node("DC-N")
    f1 = await fulfillment(api, oid, north)
    key = await api.key("partner", node_id=north)
    await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/accept", key=key)
    # Picking more than released is bad input; picking less is a short pick.
    r = await api.call("POST", f"/fulfillments/{f1['fulfillment_id']}/pick", key=key,
                       json={"lines": [{"line_id": "L1", "qty": 4}]})
    assert r.status_code == 422
    await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/pick", key=key,
                 json={"lines": [{"line_id": "L1", "qty": 1}]})
    f2 = await fulfillment(api, oid, net.node("DC-S"))
    assert [l["qty"] for l in f2["lines"]] == [2]
    inv = (await inventory(api, north))[f"{net.prefix}-SKU1"]
    # Two units were not on the shelf: on hand drops by them, and one unit stays held for the pick.
    assert (inv["on_hand"], inv["reserved"]) == (8, 1)
    picked = await fulfillment(api, oid, north, status="picked")
    assert [l["qty"] for l in picked["lines"]] == [1]
    await walk(api, f2, await api.key("partner", node_id=net.node("DC-S")))
    for step in ("pack", "ship", "deliver"):
        await api.ok("POST", f"/fulfillments/{f1['fulfillment_id']}/{step}", key=key)
    order = await order_status(api, oid, "delivered")
    assert sorted(p["amount"] for p in order["payments"] if p["kind"] == "capture") == ["10.00", "20.00"]
    kpis = await api.ok("GET", f"/kpis?channel={net.channel}")
    assert (kpis["orders"], kpis["split_rate"], kpis["cancellation_rate"]) == (1, 1.0, 0.0)
    per_node = {n["node_id"]: n for n in kpis["nodes"]}
    assert per_node[north]["fill_rate"] == round(1 / 3, 4) and per_node[net.node("DC-S")]["fill_rate"] == 1.0
    assert per_node[north]["acceptance_rate"] == 1.0
    assert (await api.ok("GET", f"/nodes/{north}"))["scorecard"]["fill_rate"] == round(1 / 3, 4)
    assert (await api.call("GET", "/kpis", key=net.client_key)).status_code == 403


async def test_support_reorchestrates_to_a_chosen_node(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f1 = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    support = await api.key("support")
    # A node without stock is refused and nothing moves.
    r = await api.call("POST", f"/orders/{oid}/reorchestrate", key=support,
                       json={"fulfillment_id": f1["fulfillment_id"], "to_node": net.node("STORE"), "reason": "x"})
    assert r.status_code == 409, r.text
    assert (await fulfillment(api, oid, net.node("DC-N")))["fulfillment_id"] == f1["fulfillment_id"]
    # Clients may not reorchestrate.
    r = await api.call("POST", f"/orders/{oid}/reorchestrate", key=net.client_key,
                       json={"fulfillment_id": f1["fulfillment_id"], "reason": "x"})
    assert r.status_code == 403
    await api.ok("POST", f"/orders/{oid}/reorchestrate", key=support,
                 json={"fulfillment_id": f1["fulfillment_id"], "to_node": net.node("DC-S"), "reason": "DC-N flooded"})
    await fulfillment(api, oid, net.node("DC-N"), status="cancelled")
    await fulfillment(api, oid, net.node("DC-S"))
    order = await api.ok("GET", f"/orders/{oid}")
    assert any(t["event"] == "reorchestrate" and t["detail"]["reason"] == "DC-N flooded" for t in order["timeline"])
    # Moving it again is refused, and says why; nothing is added to the order's story.
    again = await api.call("POST", f"/orders/{oid}/reorchestrate", key=support,
                           json={"fulfillment_id": f1["fulfillment_id"], "to_node": net.node("DC-S"), "reason": "again"})
    assert again.status_code == 409 and "nothing to move" in again.json()["detail"], again.text
    order = await api.ok("GET", f"/orders/{oid}")
    assert [t["detail"]["reason"] for t in order["timeline"] if t["event"] == "reorchestrate"] == ["DC-N flooded"]


async def test_partial_cancel_after_release_and_shipped_lines_stay(api: Api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 5}, "DC-S": {"SKU2": 5}})
    oid, fn = await released_to(api, temporal_env, settings, net, [("SKU1", 1), ("SKU2", 2)])
    fs = await fulfillment(api, oid, net.node("DC-S"))
    await walk(api, fn, await api.key("partner", node_id=net.node("DC-N")), upto="ship")
    await order_status(api, oid, "partially_shipped")
    r = await api.call("POST", f"/orders/{oid}/cancel", key=net.client_key,
                       json={"lines": [{"line_id": "L1"}], "reason": "too late"})
    assert r.status_code == 409 and "shipped" in r.json()["detail"]
    # One of the two unshipped units is cancelled: the node keeps one.
    await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key,
                 json={"lines": [{"line_id": "L2", "qty": 1}], "reason": "only need one"})
    inv = (await inventory(api, net.node("DC-S")))[f"{net.prefix}-SKU2"]
    assert inv["reserved"] == 1
    order = await api.ok("GET", f"/orders/{oid}")
    line2 = next(l for l in order["lines"] if l["line_id"] == "L2")
    assert line2["cancelled_qty"] == 1
    f = next(f for f in order["fulfillments"] if f["fulfillment_id"] == fs["fulfillment_id"])
    assert [l["qty"] for l in f["lines"]] == [1]
    # Then the rest of the order: the shipped line stays, the other fulfillment is cancelled.
    await api.ok("POST", f"/orders/{oid}/cancel", key=net.client_key, json={"reason": "rest not needed"})
    await fulfillment(api, oid, net.node("DC-S"), status="cancelled")
    assert (await inventory(api, net.node("DC-S")))[f"{net.prefix}-SKU2"]["reserved"] == 0
    await api.ok("POST", f"/fulfillments/{fn['fulfillment_id']}/deliver",
                 key=await api.key("partner", node_id=net.node("DC-N")))
    order = await order_status(api, oid, "delivered")
    pays = [(p["kind"], p["amount"]) for p in order["payments"]]
    assert ("capture", "10.00") in pays
    # What was authorized and not captured is voided when the order can capture no more.
    await eventually(lambda: _has_void(api, oid), what="void of the uncaptured remainder")


async def _has_void(api: Api, oid: str):
    order = await api.ok("GET", f"/orders/{oid}")
    return [p for p in order["payments"] if p["kind"] == "void" and p["amount"] == "20.00"]


async def test_support_reorchestrates_from_the_cli_and_a_typo_is_refused_plainly(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f1 = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    # A misspelt field: refused for good (not retried), naming what is wrong; nothing moves.
    code, out = await temporal_cli(temporal_env, "workflow", "update", "execute", "--workflow-id", oid, "--name",
                           "reorchestrate", "--input", f'{{"fulfilment_id": "{f1["fulfillment_id"]}", "reason": "x"}}')
    assert code != 0, out
    text = str(out)
    assert "invalid reorchestrate input: fulfilment_id: Extra inputs are not permitted" in text, text
    assert "(type: Invalid, retryable: false)" in text, text
    assert (await fulfillment(api, oid, net.node("DC-N")))["fulfillment_id"] == f1["fulfillment_id"]
    # The README's example moves it.
    code, out = await temporal_cli(temporal_env, "workflow", "update", "execute", "--workflow-id", oid, "--name",
                           "reorchestrate", "--input", f'{{"fulfillment_id": "{f1["fulfillment_id"]}", '
                           f'"exclude_nodes": ["{net.node("DC-N")}"], "reason": "DC-N flooded"}}')
    assert code == 0, out
    await fulfillment(api, oid, net.node("DC-S"))
