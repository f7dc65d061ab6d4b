"""Routing v1: eligibility rules, cost-based choice, order policies, explanations."""

from __future__ import annotations

import pytest

from routing import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest, plan
from routing.geo import haversine_km
from routing.model import SkuRules

DEST = dict(postal_code="60601", lat=41.88, lon=-87.63)


def node(node_id: str, type_: str = "dc", lat: float = 41.6, lon: float = -88.1, caps=("ship",), **kw) -> NodeInfo:
    return NodeInfo(node_id=node_id, type=type_, lat=lat, lon=lon, capabilities=frozenset(caps), **kw)


def line(line_id="L1", sku="A", qty=1, method="ship_standard", **kw) -> RouteLine:
    return RouteLine(line_id=line_id, sku=sku, qty=qty, method=method, **{**DEST, **kw})


def net(nodes, stock, areas=None, skus=None) -> NetworkView:
    return NetworkView(nodes={n.node_id: n for n in nodes}, service_areas=areas or {},
                       available=stock, skus=skus or {})


NEAR = node("NEAR", lat=41.6, lon=-88.1)
FAR = node("FAR", lat=32.78, lon=-96.8)


def chosen(result) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for a in result.assignments:
        out.setdefault(a.node_id, []).append((a.line_id, a.qty))
    return out


def verdict(result, node_id):
    return next(v for v in result.verdicts if v.node_id == node_id)


def test_cheapest_node_wins_and_the_loser_says_by_how_much():
    r = plan(RouteRequest(lines=(line(qty=2),)), net([NEAR, FAR], {("NEAR", "A"): 5, ("FAR", "A"): 5}))
    assert r.feasible and chosen(r) == {"NEAR": [("L1", 2)]}
    v = verdict(r, "FAR")
    assert v.outcome == "lost" and v.reason.startswith("more expensive by")
    extra = float(v.reason.split()[-1])
    model = CostModel()
    farther_km = haversine_km(FAR.lat, FAR.lon, DEST["lat"], DEST["lon"]) - haversine_km(
        NEAR.lat, NEAR.lon, DEST["lat"], DEST["lon"])
    assert extra == pytest.approx(2 * model.per_km * farther_km, abs=0.01)


def test_one_package_beats_two_when_the_package_cost_dominates():
    # NEAR has A only; FAR has A and B. One package from FAR is cheaper than two.
    r = plan(RouteRequest(lines=(line("L1", "A"), line("L2", "B"))),
             net([NEAR, FAR], {("NEAR", "A"): 5, ("FAR", "A"): 5, ("FAR", "B"): 5}))
    assert chosen(r) == {"FAR": [("L1", 1), ("L2", 1)]}


def test_split_when_no_node_has_everything():
    r = plan(RouteRequest(lines=(line("L1", "A"), line("L2", "B"))),
             net([NEAR, FAR], {("NEAR", "A"): 5, ("FAR", "B"): 5}))
    assert chosen(r) == {"NEAR": [("L1", 1)], "FAR": [("L2", 1)]}


def test_ship_complete_refuses_a_split():
    r = plan(RouteRequest(lines=(line("L1", "A"), line("L2", "B")), ship_complete=True),
             net([NEAR, FAR], {("NEAR", "A"): 5, ("FAR", "B"): 5}))
    assert not r.feasible and "ship complete" in r.reason and r.assignments == []


def test_max_splits_zero_means_one_node():
    r = plan(RouteRequest(lines=(line("L1", "A", qty=4),), max_splits=0),
             net([NEAR, FAR], {("NEAR", "A"): 2, ("FAR", "A"): 2}))
    assert sum(a.qty for a in r.assignments) == 2 and r.unfilled == {"L1": 2}


def test_a_line_splits_across_nodes_when_allowed():
    r = plan(RouteRequest(lines=(line("L1", "A", qty=4),)), net([NEAR, FAR], {("NEAR", "A"): 3, ("FAR", "A"): 3}))
    assert chosen(r) == {"NEAR": [("L1", 3)], "FAR": [("L1", 1)]}


def test_fill_or_kill_and_min_fill_rate():
    stock = {("NEAR", "A"): 1}
    r = plan(RouteRequest(lines=(line(qty=3),), fill_or_kill=True), net([NEAR], stock))
    assert not r.feasible and "fill or kill" in r.reason
    r = plan(RouteRequest(lines=(line(qty=3),), min_fill_rate=0.5), net([NEAR], stock))
    assert not r.feasible and "fill rate" in r.reason
    r = plan(RouteRequest(lines=(line(qty=3),)), net([NEAR], stock))
    assert r.feasible and r.unfilled == {"L1": 2}


def test_nothing_in_stock_is_infeasible():
    r = plan(RouteRequest(lines=(line(),)), net([NEAR], {}))
    assert not r.feasible and verdict(r, "NEAR").reason == "no stock of A"


@pytest.mark.parametrize("n, req_kw, line_kw, reason", [
    (node("X", enabled=False), {}, {}, "disabled"),
    (node("X", caps=("pickup",)), {}, {}, "cannot do ship_standard"),
    (node("X", remaining_units=0), {}, {}, "at unit capacity (per day or per hour)"),
    (node("X"), {"exclude_nodes": frozenset({"X"})}, {}, "excluded"),
    (node("X"), {}, {"exclude_nodes": frozenset({"X"})}, "excluded"),
    (node("X", type_="store"), {}, {}, "does not serve 60601"),
    (node("X"), {"to_node": "Y"}, {}, "support asked for Y"),
    (node("X", lat=34.05, lon=-118.24, caps=("same_day",)), {}, {"method": "same_day"}, "same-day radius"),
    (node("X", caps=("pickup",)), {}, {"method": "pickup", "pickup_node_id": "Z"}, "not the pickup node"),
])
def test_eligibility_rules(n, req_kw, line_kw, reason):
    r = plan(RouteRequest(lines=(line(**line_kw),), **req_kw), net([n], {("X", "A"): 5}))
    v = verdict(r, "X")
    assert not r.feasible and v.outcome == "ineligible" and reason in v.reason


def test_store_serves_its_mapped_postal_code():
    store = node("S", type_="store", lat=41.88, lon=-87.63)
    r = plan(RouteRequest(lines=(line(),)), net([store, FAR], {("S", "A"): 1, ("FAR", "A"): 1},
                                                areas={"60601": {"S": 1}}))
    assert chosen(r) == {"S": [("L1", 1)]}


def test_sku_node_type_restrictions():
    store = node("S", type_="store", lat=41.88, lon=-87.63)
    r = plan(RouteRequest(lines=(line(),)),
             net([store, FAR], {("S", "A"): 1, ("FAR", "A"): 1}, areas={"60601": {"S": 1}},
                 skus={"A": SkuRules(frozenset({"dc"}))}))
    assert chosen(r) == {"FAR": [("L1", 1)]}
    assert "not allowed from a store" in verdict(r, "S").reason


def test_capacity_caps_units():
    small = node("NEAR", remaining_units=2)
    r = plan(RouteRequest(lines=(line(qty=3),)), net([small, FAR], {("NEAR", "A"): 9, ("FAR", "A"): 1}))
    assert chosen(r) == {"NEAR": [("L1", 2)], "FAR": [("L1", 1)]}
    # Without the cap the near node takes everything.
    r = plan(RouteRequest(lines=(line(qty=3),)), net([NEAR, FAR], {("NEAR", "A"): 9, ("FAR", "A"): 1}))
    assert chosen(r) == {"NEAR": [("L1", 3)]}


def test_pickup_has_no_parcel_cost_and_uses_the_pickup_node():
    store = node("S", type_="store", caps=("pickup",))
    r = plan(RouteRequest(lines=(line(method="pickup", pickup_node_id="S"),)), net([store], {("S", "A"): 1}))
    assert chosen(r) == {"S": [("L1", 1)]} and r.cost == 0.0


def test_lines_of_the_same_sku_share_stock():
    r = plan(RouteRequest(lines=(line("L1", "A", qty=2), line("L2", "A", qty=2))),
             net([NEAR], {("NEAR", "A"): 3}))
    assert sum(a.qty for a in r.assignments) == 3 and sum(r.unfilled.values()) == 1


def test_plan_is_deterministic():
    nodes = [node(f"N{i}", lat=40 + i * 0.1, lon=-88) for i in range(8)]
    stock = {(f"N{i}", s): 2 for i in range(8) for s in "ABC"}
    req = RouteRequest(lines=(line("L1", "A", qty=3), line("L2", "B", qty=3), line("L3", "C")))
    first = plan(req, net(nodes, stock))
    assert all(plan(req, net(nodes, stock)).assignments == first.assignments for _ in range(3))


# ---------------------------------------------------------------- routing rules
from routing.rules import RoutingRules, apply_rules  # noqa: E402

STORE = node("STORE", "store", lat=41.85, lon=-87.65)  # next door, mapped to the destination
AREAS = {"60601": {"STORE": 1}}


def test_priority_groups_put_dcs_first_then_stores_as_fallback():
    view = net([NEAR, STORE], {("NEAR", "A"): 5, ("STORE", "A"): 5}, areas=AREAS)
    assert chosen(plan(RouteRequest(lines=(line(),)), view)) == {"STORE": [("L1", 1)]}  # the closest
    dc_first = apply_rules(view, RoutingRules(priority_groups=[["dc"], ["store"]]))
    assert chosen(plan(RouteRequest(lines=(line(),)), dc_first)) == {"NEAR": [("L1", 1)]}
    # The DC out of stock: the store serves after all.
    empty_dc = apply_rules(net([NEAR, STORE], {("STORE", "A"): 5}, areas=AREAS),
                           RoutingRules(priority_groups=[["dc"], ["store"]]))
    assert chosen(plan(RouteRequest(lines=(line(),)), empty_dc)) == {"STORE": [("L1", 1)]}


def test_store_pick_surcharge_prices_store_picking():
    view = net([NEAR, STORE], {("NEAR", "A"): 5, ("STORE", "A"): 5}, areas=AREAS)
    costly = apply_rules(view, RoutingRules(pick_surcharge={"store": "5.00"}))
    assert chosen(plan(RouteRequest(lines=(line(),)), costly)) == {"NEAR": [("L1", 1)]}


def test_minimum_stock_keeps_a_stores_last_units_out_of_online_orders():
    view = apply_rules(net([NEAR, STORE], {("NEAR", "A"): 5, ("STORE", "A"): 2}, areas=AREAS),
                       RoutingRules(min_stock={"store": 3}))
    r = plan(RouteRequest(lines=(line(),)), view)
    assert chosen(r) == {"NEAR": [("L1", 1)]}
    assert verdict(r, "STORE").reason == "holds 2 of A, below the minimum of 3 for a store"


@pytest.mark.parametrize("bad", [
    {"priority_groups": [["dc"], ["dc", "store"]]}, {"priority_groups": [[]]}, {"pick_surcharge": {"store": -1}},
    {"min_stock": {"store": -2}}, {"priority_groups": [["warehouse"]]}, {"unknown": 1},
])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValueError):
        RoutingRules.model_validate(bad)


def test_unreliable_partners_get_less_work_and_are_flagged():
    from routing.scorecard import Scorecard

    shaky = Scorecard(fulfillments=40, acceptance_rate=0.5, fill_rate=0.9, on_time_ship_rate=1.0,
                      rejection_reasons={"no staff": 20})
    assert shaky.reliability() == pytest.approx(0.45)
    rules = RoutingRules(partner_penalty="10")
    assert shaky.below(rules.scorecard_floors, rules.scorecard_min_fulfillments) == ["acceptance_rate"]
    assert Scorecard(fulfillments=3, acceptance_rate=0.0).below(rules.scorecard_floors, 20) == []  # too new to judge
    view = net([NEAR, STORE], {("NEAR", "A"): 5, ("STORE", "A"): 5}, areas=AREAS)
    assert chosen(plan(RouteRequest(lines=(line(),)), apply_rules(view, rules, {"STORE": shaky}))) == {"NEAR": [("L1", 1)]}
    # Without history a node is trusted; without a penalty the scorecard only informs.
    assert chosen(plan(RouteRequest(lines=(line(),)), apply_rules(view, rules, {}))) == {"STORE": [("L1", 1)]}
    assert chosen(plan(RouteRequest(lines=(line(),)), apply_rules(view, RoutingRules(), {"STORE": shaky}))) == {
        "STORE": [("L1", 1)]}


def test_hazmat_and_oversized_items_ship_only_from_the_node_types_the_rules_allow():
    skus = {"A": SkuRules(handling=frozenset({"hazmat"}))}
    view = net([NEAR, STORE], {("NEAR", "A"): 5, ("STORE", "A"): 5}, areas=AREAS, skus=skus)
    assert chosen(plan(RouteRequest(lines=(line(),)), view)) == {"STORE": [("L1", 1)]}  # no rule: the closest
    ruled = apply_rules(view, RoutingRules(handling={"hazmat": ["dc"], "oversized": ["store"]}))
    r = plan(RouteRequest(lines=(line(),)), ruled)
    assert chosen(r) == {"NEAR": [("L1", 1)]}
    assert verdict(r, "STORE").reason == "hazmat items ship only from dc"


def test_a_ship_alone_item_pays_a_package_per_unit_and_shares_none():
    skus = {"B": SkuRules(handling=frozenset({"ship_alone"}))}
    view = net([NEAR], {("NEAR", "A"): 5, ("NEAR", "B"): 5}, skus=skus)
    together = plan(RouteRequest(lines=(line("L1", "A"),)), view).cost
    alone = plan(RouteRequest(lines=(line("L1", "A"), line("L2", "B", qty=2))), view).cost
    unit = together - CostModel().package_cost  # one unit of A, without its package
    assert alone == pytest.approx(together + 2 * (unit + CostModel().package_cost), abs=0.01)


def test_a_node_at_its_daily_order_capacity_takes_no_more_orders():
    busy = node("NEAR", remaining_orders=0)
    r = plan(RouteRequest(lines=(line(),)), net([busy, FAR], {("NEAR", "A"): 5, ("FAR", "A"): 5}))
    assert chosen(r) == {"FAR": [("L1", 1)]} and verdict(r, "NEAR").reason == "at daily order capacity"


def test_a_budget_limited_search_says_so_and_reports_a_bound():
    nodes = [node(f"N{i}", lat=41.0 + i * 0.3, lon=-88.0 - i * 0.3) for i in range(12)]
    stock = {(n.node_id, "ABCDEFGH"[i % 8]): 5 for i, n in enumerate(nodes)}  # no node has two SKUs
    lines = tuple(line(f"L{i}", s) for i, s in enumerate("ABC"))
    full = plan(RouteRequest(lines=lines), net(nodes, stock))
    assert full.exact and full.lower_bound <= full.search_cost
    rushed = plan(RouteRequest(lines=lines, budget_ms=0), net(nodes, stock))
    assert not rushed.exact and rushed.lower_bound == full.lower_bound
    assert rushed.search_cost >= full.search_cost >= rushed.lower_bound
    assert rushed.feasible and rushed.assignments  # single nodes are always priced


def test_line_level_sourcing_takes_each_line_from_its_own_best_node():
    # NEAR has A only; FAR has A and B: order-level sourcing ships both from FAR in one package.
    view = net([NEAR, FAR], {("NEAR", "A"): 5, ("FAR", "A"): 5, ("FAR", "B"): 5})
    lines = (line("L1", "A"), line("L2", "B"))
    assert chosen(plan(RouteRequest(lines=lines), view)) == {"FAR": [("L1", 1), ("L2", 1)]}
    # Urgent parts: each line from its closest node, whatever the packages cost.
    assert chosen(plan(RouteRequest(lines=lines, per_line=True), view)) == {"NEAR": [("L1", 1)], "FAR": [("L2", 1)]}


def test_digital_lines_need_no_node_and_no_stock():
    skus = {"CODE": SkuRules(digital=True)}
    view = net([NEAR, FAR], {("NEAR", "A"): 5}, skus=skus)
    mixed = plan(RouteRequest(lines=(line("L1", "A"), line("L2", "CODE", qty=3))), view)
    assert mixed.feasible and chosen(mixed) == {"NEAR": [("L1", 1)]}
    assert mixed.digital == {"L2": 3} and mixed.unfilled == {}
    # An order of digital lines alone is served with no node at all.
    alone = plan(RouteRequest(lines=(line("L1", "CODE", qty=2),), ship_complete=True), view)
    assert alone.feasible and alone.assignments == [] and alone.digital == {"L1": 2}
    # Ship complete still holds the physical lines to one node; a failed plan delivers nothing digital either.
    short = plan(RouteRequest(lines=(line("L1", "B"), line("L2", "CODE")), ship_complete=True), view)
    assert not short.feasible and short.digital == {} and short.unfilled == {"L1": 1, "L2": 1}
    # Digital units count as filled for the fill rate.
    half = plan(RouteRequest(lines=(line("L1", "B"), line("L2", "CODE")), min_fill_rate=0.5), view)
    assert half.feasible and half.unfilled == {"L1": 1} and half.digital == {"L2": 1}


def test_the_store_mapping_priority_decides_between_equal_stores():
    """A postal code's first store serves when it can; the second only when the first cannot."""
    a = node("STORE-A", "store", lat=41.88, lon=-87.63)
    b = node("STORE-B", "store", lat=41.88, lon=-87.63)
    stock = {("STORE-A", "A"): 5, ("STORE-B", "A"): 5}
    for first, second in (("STORE-A", "STORE-B"), ("STORE-B", "STORE-A")):
        areas = {"60601": {first: 1, second: 2}}
        r = plan(RouteRequest(lines=(line(qty=2),)), net([a, b], stock, areas))
        assert chosen(r) == {first: [("L1", 2)]}, (first, chosen(r))
        assert verdict(r, second).outcome == "lost"
    # The first has none: the second serves.
    r = plan(RouteRequest(lines=(line(qty=2),)), net([a, b], {("STORE-B", "A"): 5}, {"60601": {"STORE-A": 1, "STORE-B": 2}}))
    assert chosen(r) == {"STORE-B": [("L1", 2)]}


CASED = {"A": SkuRules(packs=(("case", 12), ("pallet", 480)))}


def test_a_node_that_ships_whole_cases_only_gets_whole_cases_and_the_rest_goes_elsewhere():
    dc = node("NEAR", ships_whole="case")  # the cheaper node, with 40 each on hand: three whole cases
    view = net([dc, FAR], {("NEAR", "A"): 40, ("FAR", "A"): 40}, skus=CASED)
    r = plan(RouteRequest(lines=(line(qty=30),)), view)
    assert chosen(r) == {"NEAR": [("L1", 24)], "FAR": [("L1", 6)]}
    # Fewer eaches than a case: the whole-case node is not a candidate, and says why.
    r = plan(RouteRequest(lines=(line(qty=5),)), view)
    assert chosen(r) == {"FAR": [("L1", 5)]}
    assert verdict(r, "NEAR").reason == "ships whole cases only: 12 units of A at a time, the line needs 5"
    # A SKU without a case size ships loose from there.
    r = plan(RouteRequest(lines=(line(qty=5),)), net([dc, FAR], {("NEAR", "A"): 40, ("FAR", "A"): 40}))
    assert chosen(r) == {"NEAR": [("L1", 5)]}


def test_a_line_ordered_by_the_case_is_split_only_in_whole_cases():
    # 3 cases (36 each); NEAR holds 30 each (two whole cases), FAR the rest.
    view = net([NEAR, FAR], {("NEAR", "A"): 30, ("FAR", "A"): 100}, skus=CASED)
    r = plan(RouteRequest(lines=(line(qty=36, pack=12),), max_splits=1), view)
    assert chosen(r) == {"NEAR": [("L1", 24)], "FAR": [("L1", 12)]}
    # A pallet line against a node that ships whole cases: 480 at a time either way.
    view = net([node("NEAR", ships_whole="case")], {("NEAR", "A"): 1000}, skus=CASED)
    r = plan(RouteRequest(lines=(line(qty=960, pack=480),)), view)
    assert chosen(r) == {"NEAR": [("L1", 960)]}
    r = plan(RouteRequest(lines=(line(qty=1440, pack=480),)), view)
    assert chosen(r) == {"NEAR": [("L1", 960)]} and r.unfilled == {"L1": 480}


def test_a_line_that_ships_complete_only_comes_whole_from_one_node_or_waits():
    view = net([NEAR, FAR], {("NEAR", "A"): 6, ("FAR", "A"): 4})
    r = plan(RouteRequest(lines=(line(qty=10, complete=True),)), view)
    assert chosen(r) == {} and r.unfilled == {"L1": 10}
    assert verdict(r, "NEAR").reason == "the line ships complete only: 10 units of A at a time, it holds 6"
    r = plan(RouteRequest(lines=(line(qty=10),)), view)  # otherwise split
    assert chosen(r) == {"NEAR": [("L1", 6)], "FAR": [("L1", 4)]}
    r = plan(RouteRequest(lines=(line(qty=5, complete=True),)), view)
    assert chosen(r) == {"NEAR": [("L1", 5)]}
