"""The quote engine (routing/fast.py) decides as the full engine (routing/engine.plan) does: on the routing
benchmark's orders and on random carts over a network with every kind of rule a quote meets."""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from models.status import DeliveryMethod
from promise.dates import PRODUCT_BUFFER
from routing.engine import plan
from routing.fast import DenseStock, Tables, quick_plan, same_decision
from routing.model import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest, SkuRules
from routing.rules import RoutingRules, apply_rules
from routing.stdio import Session

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("family,seed", [("omni", 2), ("ma", 1)])
def test_the_benchmark_orders_get_the_same_decisions(family, seed):
    sys.path.insert(0, str(BENCH))
    try:
        import routing_bench
    finally:
        sys.path.remove(str(BENCH))
    instance = routing_bench.generate(family, seed, 300, "warmup")
    session = Session(instance["network"], background=False, compare=True)
    for order in instance["orders"]:
        session.decide(order)
    assert Counter(session.compare) == Counter({"": 300}), [c for c in session.compare if c][:3]


def _network(rng: random.Random) -> NetworkView:
    nodes = {}
    for i in range(120):
        kind = "dc" if i % 12 == 0 else "dropship" if i % 17 == 0 else "store"
        caps = {"ship"} | ({"pickup", "curbside", "same_day"} if kind == "store" and i % 3 == 0 else set())
        nodes[f"N{i:03d}"] = NodeInfo(
            f"N{i:03d}", kind, 40 + rng.random() * 2, -88 + rng.random() * 2, frozenset(caps),
            enabled=i % 29 != 5, handling_cost=round(rng.random(), 2), timezone="America/Chicago",
            remaining_units=rng.choice([None, None, None, 0, 3, 50]), hours=("08:00", "21:00"),
            same_day_cutoff=rng.choice(["12:00", "16:00", "20:00"]))
    skus = {f"S{j}": SkuRules(
        allowed_node_types=frozenset({"dc", "dropship"}) if j % 11 == 0 else frozenset(),
        handling=frozenset({"oversized"}) if j % 7 == 0 else frozenset({"ship_alone"}) if j % 13 == 0 else frozenset())
        for j in range(40)}
    available = {(n, s): rng.choice([0, 0, 1, 2, 3, 8, 20]) for n in nodes for s in skus}
    areas = {f"P{p}": {n: k + 1 for k, n in enumerate(rng.sample(sorted(nodes), 6))} for p in range(8)}
    opportunity = {(n, s): round(rng.random() * 3, 3) for n, s in rng.sample(sorted(available), 400)}
    net = NetworkView(nodes=nodes, service_areas=areas, available=available, skus=skus, opportunity=opportunity,
                      channel_excluded={n: "not sold on channel web" for n in rng.sample(sorted(nodes), 5)},
                      promise_buffer=PRODUCT_BUFFER)
    rules = RoutingRules(priority_groups=[["store"], ["dc"]], pick_surcharge={"store": "0.75"},
                         min_stock={"store": 2}, handling={"oversized": ["dc", "dropship"]})
    return apply_rules(net, rules)


def test_random_carts_get_the_same_decisions():
    # Most carts of 1-6 lines, every tenth of 20-40 (a B2B cart: every SKU of the network at most).
    rng = random.Random(5)
    net = _network(rng)
    tables = Tables()  # kept across carts, as a process keeps them
    outcomes: Counter = Counter()
    stores = [n.node_id for n in net.nodes.values() if "pickup" in n.capabilities]
    for i in range(600):
        method = rng.choice(list(DeliveryMethod))
        postal = f"P{rng.randrange(8)}"
        at = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc) + timedelta(minutes=37 * i)
        pickup = rng.choice(stores) if method in (DeliveryMethod.pickup, DeliveryMethod.curbside) else None
        lines = tuple(RouteLine(str(k), sku, rng.randint(1, 6), method.value, None if pickup else postal,
                                41 + rng.random() * 0.2, -87 + rng.random() * 0.2, pickup_node_id=pickup,
                                exclude_nodes=frozenset(rng.sample(sorted(net.nodes), 3)) if rng.random() < 0.2
                                else frozenset())
                      for k, sku in enumerate(rng.sample(sorted(net.skus),
                                                         rng.randint(1, 6) if i % 10 else rng.randint(20, 40))))
        req = RouteRequest(lines=lines, at=at, max_splits=rng.choice([0, 1, 2]), ship_complete=rng.random() < 0.1,
                           fill_or_kill=rng.random() < 0.1, min_fill_rate=rng.choice([0.0, 0.0, 0.5]),
                           exclude_nodes=frozenset(rng.sample(sorted(net.nodes), 4)) if rng.random() < 0.2
                           else frozenset(),
                           to_node=rng.choice(sorted(net.nodes)) if rng.random() < 0.05 else None)
        full = plan(req, net, CostModel())
        dense = replace(net, available=DenseStock.from_mapping(net.available, {l.sku for l in lines}))
        verdict = same_decision(full, quick_plan(req, dense, CostModel(), tables))
        assert verdict == "", (i, req, verdict)
        outcomes[full.feasible] += 1
    assert outcomes[True] > 200 and outcomes[False] > 20, outcomes  # both kinds of answer were compared


def test_what_the_quote_engine_leaves_to_the_full_engine():
    """Lines with a due date, a pack or ship-complete-only, and nodes shipping whole cases only: declined."""
    rng = random.Random(1)
    net = _network(rng)
    dense = replace(net, available=DenseStock.from_mapping(net.available, {"S1"}))
    line = RouteLine("1", "S1", 2, "ship_standard", "P1", 41.0, -87.0)
    at = datetime(2026, 12, 7, 15, tzinfo=timezone.utc)
    for odd in (replace(line, due=at.date()), replace(line, pack=2), replace(line, complete=True)):
        assert quick_plan(RouteRequest(lines=(odd,), at=at), dense, CostModel(), Tables()) is None
    assert quick_plan(RouteRequest(lines=(line,), at=at), net, CostModel(), Tables()) is None  # stock not dense
    assert quick_plan(RouteRequest(lines=(line,), at=at), dense, CostModel(), Tables()) is not None


def test_a_different_decision_is_caught():
    rng = random.Random(2)
    net = _network(rng)
    line = RouteLine("1", "S3", 2, "ship_standard", "P1", 41.0, -87.0)
    req = RouteRequest(lines=(line,), at=datetime(2026, 12, 7, 15, tzinfo=timezone.utc))
    full = plan(req, net, CostModel())
    emptied = {k: (0 if k[1] == "S3" else v) for k, v in net.available.items()}
    other = quick_plan(req, replace(net, available=DenseStock.from_mapping(emptied, {"S3"})), CostModel(), Tables())
    assert full.feasible and same_decision(full, other).startswith("feasible")
