"""The routing benchmark runs from a clone (bench/routing_bench.py, its data beside it) against `nodal route
--stdio`, the engine the workflow uses: a short omni-channel stream, scored against its baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "routing_bench.py"


def test_the_routing_benchmark_runs_from_the_repository(tmp_path):
    instance = tmp_path / "omni.json"
    subprocess.run([sys.executable, str(BENCH), "gen", "--family", "omni", "--seed", "2", "--horizon", "200",
                    "--out", str(instance)], check=True, capture_output=True, cwd=tmp_path)
    nodal = str(Path(sys.executable).parent / "nodal")
    run = subprocess.run([sys.executable, str(BENCH), "run", "--instance", str(instance), "--engine",
                          f"{nodal} route --stdio", "--baselines", "--dlp-time-limit", "30"],
                         check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    results = json.loads(run.stdout)
    engine, myopic = results["engine"], results["myopic"]
    assert engine["orders"] == 200 and engine["invalid_allocations"] == 0, engine
    assert results["dlp_bound"] <= engine["cost"] < myopic["cost"], results  # above the bound, below myopic
