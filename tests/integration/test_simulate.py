"""`nodal simulate` as a user runs it: a fresh embedded stack, orders through the real API and workflows on their
own virtual clocks, the figures written as JSON, CSV and an HTML report. A small scenario (a day of a dozen
orders); bench/README.md has the 14-day run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.simulate import default_scenario

pytestmark = pytest.mark.integration
NODAL = str(Path(sys.executable).parent / "nodal")


def test_a_day_of_orders_runs_through_the_product_and_is_reported(tmp_path):
    demand = default_scenario()["demand"]
    demand["orders_per_day"] = 8
    partners = {**default_scenario()["partners"], "reject_rate": 0.35}  # some reroutes even in a few orders
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"demand": demand, "partners": partners}))
    out = tmp_path / "out"
    run = subprocess.run([NODAL, "simulate", "--days", "1", "--seed", "3", "--network", str(scenario), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    k = json.loads((out / "kpis.json").read_text())
    rows = list(csv.DictReader((out / "orders.csv").open()))
    assert k["orders"] == len(rows) >= 4
    # Every order ran its whole life: placed, released, accepted (or rerouted), shipped, delivered; but one whose
    # every node with the stock refused it (35% do here) waits for stock from another, past the run's end.
    waiting = [r for r in rows if r["unfinished"]]
    assert all("waiting for stock" in r["unfinished"] for r in waiting) and len(waiting) <= 2, waiting
    assert k["finished"] == k["orders"] - len(waiting)
    assert {r["status"] for r in rows if not r["unfinished"]} <= {"delivered", "partially_returned", "returned",
                                                                  "cancelled"}
    assert k["partner_events"]["reject"] >= 1 and k["reroutes_per_order"] > 0
    assert k["partner_events"]["deliver"] >= k["orders"] - k["partner_events"].get("lost", 0)
    # The simulator's own count and the product's GET /kpis agree.
    assert k["kpis_endpoint"]["orders"] == k["orders"]
    delivered = [r for r in rows if r["delivered_at"]]
    assert k["promise_kept_rate"] == round(sum(r["on_time"] == "True" for r in delivered) / len(delivered), 4)
    assert k["kpis_endpoint"]["on_time_rate"] == k["promise_kept_rate"]
    # Each delivery took simulated days, not the seconds the run took.
    assert all(r["slack_days"] != "" for r in delivered) and k["median_promise_slack_days"] >= 0
    assert {s["node_id"] for s in k["scorecards"]} >= {"DC-EAST", "DC-WEST", "DSV-OUTDOOR"}
    assert any(s["fulfillments"] for s in k["scorecards"])
    report = (out / "report.html").read_text()
    assert "Simulation: 1 days, seed 3" in report and "Partner scorecards" in report and "new Chart(" in report
    assert "https://" not in report.split("<script>")[0]  # one file, no assets from elsewhere
    assert "fulfillment_rate" in run.stdout and "report:" in run.stderr


def test_a_scenario_with_an_unknown_section_is_refused_before_anything_starts(tmp_path):
    from launcher.simulate import load_scenario

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"netwrok": {}}))
    with pytest.raises(SystemExit, match=r"unknown sections \['netwrok'\]"):
        load_scenario(bad)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"returns": {"rate": 0.5, "after_days": [1, 2]}}))
    scenario = load_scenario(partial)
    assert scenario["returns"]["rate"] == 0.5 and scenario["partners"] == default_scenario()["partners"]
