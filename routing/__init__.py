"""Sourcing engine: pure functions over plain data (no I/O), used by the workflow's plan activity,
the API and the benchmark alike.

Pipeline: eligibility (who may serve each line) → cost (landed cost of a unit and a package)
→ optimization (cheapest node set under the order's policy) → explanation (why each node lost).
"""

from routing.model import CostModel, NetworkView, NodeInfo, RouteLine, RouteRequest, RouteResult
from routing.engine import plan

__all__ = ["CostModel", "NetworkView", "NodeInfo", "RouteLine", "RouteRequest", "RouteResult", "plan"]
