"""Hindsight reference for the sourcing engine on small instances.

With every order known in advance, the cheapest possible allocation is a mixed-integer program (per order:
a package per node used, each unit from one eligible node or lost; stock and capacity shared across
orders). No online policy can beat it; it is tighter than the DLP bound the published harness prints,
because it pays packages in whole numbers and sees the actual orders, not their expectation.

    python bench/routing_hindsight.py [--family ma|omni] [--seeds 1 2 3] [--horizon 400]

Instances come from bench/routing_bench.py (same generator, smaller horizon: stock scales with
it). Prints engine, myopic and order-optimal cost as a ratio to the hindsight optimum.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import routing_bench as harness  # noqa: E402

from routing.stdio import Session  # noqa: E402


def hindsight(inst: dict, time_limit: float) -> tuple[float, str, float]:
    """The clairvoyant optimum (or the best found in the time limit), its status, and HiGHS's lower bound on it."""
    net = harness.Network(inst["network"])
    inv = inst["network"]["inventory"]
    cost: list[float] = []
    integer: list[int] = []
    rows: list[tuple[list[int], list[float], float, float]] = []  # (cols, coefs, lower, upper)
    stock_use: dict[tuple[str, str], list[int]] = {}
    cap_use: dict[str, list[int]] = {}

    def var(c: float, is_int: bool) -> int:
        cost.append(c)
        integer.append(1 if is_int else 0)
        return len(cost) - 1

    for order in inst["orders"]:
        r = order["region"]
        nodes = sorted(net.service[r])
        package = {k: var(harness.PACKAGE_FEE, True) for k in nodes}
        lost_any = var(2 * harness.PACKAGE_FEE, True)
        for line in order["lines"]:
            options = []
            for k in nodes:
                if inv[k].get(line["sku"], 0) <= 0:
                    continue
                x = var(net.unit(k, r), True)
                options.append(x)
                rows.append(([x, package[k]], [1.0, -line["qty"]], -np.inf, 0.0))
                stock_use.setdefault((k, line["sku"]), []).append(x)
                cap_use.setdefault(k, []).append(x)
            lost = var(net.unfilled_unit(r), False)
            rows.append(([lost, lost_any], [1.0, -line["qty"]], -np.inf, 0.0))
            rows.append((options + [lost], [1.0] * (len(options) + 1), line["qty"], line["qty"]))
    for (k, sku), cols in stock_use.items():
        rows.append((cols, [1.0] * len(cols), -np.inf, inv[k].get(sku, 0)))
    for k, cols in cap_use.items():
        capacity = net.nodes[k].get("capacity_units")
        if capacity is not None:
            rows.append((cols, [1.0] * len(cols), -np.inf, capacity))
    r_idx, c_idx, vals, lo, hi = [], [], [], [], []
    for i, (cols, coefs, lower, upper) in enumerate(rows):
        r_idx += [i] * len(cols)
        c_idx += cols
        vals += coefs
        lo.append(lower)
        hi.append(upper)
    a = coo_matrix((vals, (r_idx, c_idx)), shape=(len(rows), len(cost))).tocsr()
    ub = np.full(len(cost), np.inf)  # packages and units are whole; a line is at most its quantity anyway
    res = milp(np.array(cost), constraints=LinearConstraint(a, lo, hi), integrality=np.array(integer),
               bounds=Bounds(np.zeros(len(cost)), ub), options={"time_limit": time_limit, "mip_rel_gap": 1e-4})
    bound = getattr(res, "mip_dual_bound", None)
    if res.x is None:
        return float("nan"), res.message, float("nan") if bound is None else float(bound)
    fun = float(res.fun)
    return fun, "optimal" if res.status == 0 else "best found in the time limit", fun if bound is None else float(bound)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["ma", "omni"], default="ma")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--horizon", type=int, default=400)
    ap.add_argument("--time-limit", type=float, default=120)
    ap.add_argument("--instance", help="a full harness instance (routing_bench.py gen): prints how much of the "
                                       "myopic-to-DLP gap clairvoyance itself can close")
    a = ap.parse_args()
    if a.instance:
        return ceiling(a.instance, a.time_limit)
    print(f"{a.family}, {a.horizon} orders per instance; cost / hindsight optimum (lower is better, 1 = clairvoyant)")
    print(f"{'seed':>4} {'hindsight $':>12} {'engine':>8} {'order-opt':>9} {'myopic':>8} {'DLP':>8}  solve")
    for seed in a.seeds:
        inst = harness.generate(a.family, seed, a.horizon, "warmup")
        t0 = time.perf_counter()
        best, status, _ = hindsight(inst, a.time_limit)
        solve = time.perf_counter() - t0
        session = Session(inst["network"], background=False, resolve_every=max(a.horizon // 20, 1))
        engine = harness.replay(inst, session.decide, "engine")["cost"]
        session.close()
        base = {n: harness.replay(inst, harness.builtin_decider(inst, n), n)["cost"] for n in ("order-optimal", "myopic")}
        dlp = harness.dlp_bound(inst, harness.Network(inst["network"]), 60) or float("nan")
        print(f"{seed:>4} {best:>12,.2f} {engine / best:>8.4f} {base['order-optimal'] / best:>9.4f} "
              f"{base['myopic'] / best:>8.4f} {dlp / best:>8.4f}  {solve:.1f} s {status}")


def ceiling(path: str, time_limit: float) -> None:
    """No policy, online or not, closes more of the harness's gap_closed_vs_myopic than the clairvoyant optimum."""
    import json

    inst = json.loads(Path(path).read_text())
    t0 = time.perf_counter()
    best, status, bound = hindsight(inst, time_limit)
    myopic = harness.replay(inst, harness.builtin_decider(inst, "myopic"), "myopic")["cost"]
    dlp = harness.dlp_bound(inst, harness.Network(inst["network"]), 300)
    print(f"{path}: hindsight {best:,.2f} ({status}, lower bound {bound:,.2f}) in {time.perf_counter() - t0:.0f} s")
    print(f"  myopic {myopic:,.2f}  DLP {dlp:,.2f}  hindsight/DLP {bound / dlp:.4f}-{best / dlp:.4f}")
    print(f"  most gap_closed_vs_myopic any policy can reach: {(myopic - bound) / (myopic - dlp):.4f}")


if __name__ == "__main__":
    main()
