"""Forecast-aware sourcing: bid prices from the demand LP, and the engine weighing them."""

from __future__ import annotations

import io
import json

import pytest

import routing.bidprice as bidprice
from routing import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest, plan
from routing.bidprice import Demand, bid_prices
from routing.cost import unit_cost
from routing.stdio import serve

# Two regions 1,000 km apart, each with its own node; the east node is a little closer to the middle.
WEST, EAST, MIDDLE = (40.0, -100.0), (40.0, -88.3), (40.0, -93.9)
NODES = {"N-W": NodeInfo("N-W", "dc", *WEST, frozenset({"ship"})), "N-E": NodeInfo("N-E", "dc", *EAST, frozenset({"ship"}))}
MODEL = CostModel()


def _unit(node: str, at: tuple[float, float]) -> float:
    return unit_cost(NODES[node], RouteLine("x", "X", 1, "ship_standard", lat=at[0], lon=at[1]), MODEL)


def _prices(stock, demand, **kw):
    regions = {"W": WEST, "E": EAST}
    unit = {(n, r): _unit(n, at) for n in NODES for r, at in regions.items()}
    return bid_prices(demand, stock, {n: None for n in NODES}, lambda region, sku: list(NODES), unit,
                      {r: 20.0 for r in regions}, MODEL, **kw)


@pytest.mark.parametrize("order_type_lp", [True, False])
def test_scarce_stock_is_priced_and_plentiful_stock_is_free(monkeypatch, order_type_lp):
    if not order_type_lp:
        monkeypatch.setattr(bidprice, "MAX_ORDER_TYPE_VARIABLES", 0)  # the transportation LP
    # The east expects more than its node holds; the west node has plenty.
    prices = _prices({("N-E", "X"): 5, ("N-W", "X"): 100},
                     [Demand("E", ("X",), 8.0), Demand("W", ("X",), 3.0)])
    # A unit taken from the east node now will be shipped to an eastern customer from the west later.
    assert prices[("N-E", "X")] == pytest.approx(_unit("N-W", EAST) - _unit("N-E", EAST), rel=1e-3)
    assert prices[("N-W", "X")] == pytest.approx(0.0, abs=1e-6)


def test_no_expected_shortage_no_price():
    prices = _prices({("N-E", "X"): 50, ("N-W", "X"): 50}, [Demand("E", ("X",), 8.0), Demand("W", ("X",), 3.0)])
    assert all(p == pytest.approx(0.0, abs=1e-6) for p in prices.values())


def test_engine_leaves_scarce_stock_for_the_customers_it_serves_best():
    line = RouteLine("L1", "X", 1, "ship_standard", lat=MIDDLE[0], lon=MIDDLE[1])
    view = dict(nodes=NODES, available={("N-E", "X"): 5, ("N-W", "X"): 100})
    assert {a.node_id for a in plan(RouteRequest(lines=(line,)), NetworkView(**view)).assignments} == {"N-E"}
    priced = NetworkView(**view, opportunity={("N-E", "X"): 3.0})
    assert {a.node_id for a in plan(RouteRequest(lines=(line,)), priced).assignments} == {"N-W"}


def _network():
    return {"type": "network", "horizon": 4,
            "nodes": [{"id": "N-W", "kind": "dc", "lat": WEST[0], "lon": WEST[1], "capacity_units": None,
                       "unit_surcharge": 0.0},
                      {"id": "S-E", "kind": "store", "lat": EAST[0], "lon": EAST[1], "capacity_units": 1,
                       "unit_surcharge": 1.25}],
            "regions": [{"id": "W", "lat": WEST[0], "lon": WEST[1]}, {"id": "E", "lat": EAST[0], "lon": EAST[1]}],
            "service": {"W": ["N-W"], "E": ["N-W", "S-E"]}, "skus": ["X", "Y"],
            "inventory": {"N-W": {"X": 2}, "S-E": {"X": 5, "Y": 1}},
            "forecast": [{"region": "E", "skus": ["X"], "expected": 2.0}, {"region": "W", "skus": ["X"], "expected": 2.0}]}


def test_stdio_protocol_tracks_its_own_stock_and_capacity():
    orders = [{"type": "order", "id": f"O{i}", "region": r, "lines": lines} for i, (r, lines) in enumerate([
        ("E", [{"sku": "X", "qty": 1}]),                       # the store is next door
        ("E", [{"sku": "X", "qty": 1}]),                       # the store is at capacity: from the DC
        ("W", [{"sku": "X", "qty": 1}]),                       # the DC's last unit
        ("W", [{"sku": "X", "qty": 1}]),                       # the only node serving W has none left
        ("E", [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 1}]),  # nowhere to go: lost, not half-served
    ])]
    out = io.StringIO()
    serve(io.StringIO("\n".join(json.dumps(m) for m in [_network(), *orders, {"type": "end"}]) + "\n"), out,
          background=False)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[0] == {"type": "ready"}
    alloc = {r["id"]: sorted((a["line"], a["node"], a["qty"]) for a in r["allocations"]) for r in replies[1:]}
    assert alloc == {"O0": [(0, "S-E", 1)], "O1": [(0, "N-W", 1)], "O2": [(0, "N-W", 1)], "O3": [], "O4": []}


def test_nodal_route_stdio_command():
    import subprocess
    import sys

    msgs = [_network(), {"type": "order", "id": "O1", "region": "W", "lines": [{"sku": "X", "qty": 1}]}, {"type": "end"}]
    r = subprocess.run([sys.executable, "-m", "launcher.cli", "route", "--stdio"], input="\n".join(map(json.dumps, msgs)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in r.stdout.splitlines()] == [
        {"type": "ready"}, {"id": "O1", "allocations": [{"line": 0, "node": "N-W", "qty": 1}]}]


def test_network_bid_prices_follow_the_same_eligibility_as_orders():
    """A store serves only its mapped postal codes and a hazmat SKU ships only from DCs: stock a forecast
    customer cannot be served from is not priced for them."""
    from routing.bidprice import ForecastEntry, network_bid_prices
    from routing.model import SkuRules

    nodes = {**NODES, "ST-E": NodeInfo("ST-E", "store", *EAST, frozenset({"ship"}))}
    view = NetworkView(nodes=nodes, service_areas={"E1": {"ST-E": 1}},
                       available={("N-E", "X"): 2, ("ST-E", "X"): 2, ("N-W", "X"): 100,
                                  ("N-E", "H"): 2, ("ST-E", "H"): 2, ("N-W", "H"): 100},
                       skus={"H": SkuRules(handling=frozenset({"hazmat"}))},
                       handling_node_types={"hazmat": frozenset({"dc"})})
    east = [ForecastEntry("E1", *EAST, ("X",), 6.0), ForecastEntry("E1", *EAST, ("H",), 6.0)]
    prices = network_bid_prices(east, view, {k: None for k in nodes}, MODEL)
    # X: the east store and DC both serve E1; 4 local units for 6 orders: both are scarce.
    assert prices[("ST-E", "X")] > 0 and prices[("N-E", "X")] > 0
    # H may not leave the store, so its store stock is worth nothing to the forecast; the DC's is.
    assert prices.get(("ST-E", "H"), 0.0) == pytest.approx(0.0, abs=1e-9) and prices[("N-E", "H")] > 0
    # Elsewhere (a postal code the store does not serve) the store's stock has no value either.
    west = network_bid_prices([ForecastEntry("W1", *WEST, ("X",), 200.0)], view, {k: None for k in nodes}, MODEL)
    assert west.get(("ST-E", "X"), 0.0) == pytest.approx(0.0, abs=1e-9)
    assert west[("N-W", "X")] > 0  # 200 western orders for 100 units nearby


def test_capacity_over_the_horizon_is_priced():
    from routing.bidprice import ForecastEntry, network_bid_prices

    view = NetworkView(nodes=NODES, available={("N-E", "X"): 100, ("N-W", "X"): 100})
    entries = [ForecastEntry("E1", *EAST, ("X",), 30.0)]
    assert all(p == pytest.approx(0.0, abs=1e-9) for p in network_bid_prices(
        entries, view, {"N-E": None, "N-W": None}, MODEL).values())
    capped = network_bid_prices(entries, view, {"N-E": 10, "N-W": None}, MODEL)
    assert capped[("N-E", "X")] > 0  # the east node can ship only 10 of the 30 it is best placed for
