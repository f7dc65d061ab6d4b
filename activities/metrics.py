"""Business and engine metrics recorded where the work happens, through the activity's Temporal metric meter: they
leave the worker with the SDK's own metrics on its Prometheus endpoint (NODAL_WORKER_METRICS_ADDRESS).

Orders and fulfillments are counted from the events the read model writes (events/catalogue.py), so a metric and
an outbound event never disagree: orders by type of event and channel, cancellations by cause, fulfillments by
node and outcome, reroutes by what caused them. Labels stay few: a channel, a node, a cause from a closed list."""

from __future__ import annotations

import re
from typing import Iterable, Optional

from temporalio import activity

# A cancellation's cause, from the reason the order recorded (customers' own words count as "requested").
_CAUSES = (("payment", "payment"), ("carrier exception", "carrier_exception"), ("exchanged units", "exchange"),
           ("approval", "approval"), ("declined", "approval"), ("cancel_remaining", "unavailable"),
           ("never came", "exchange"), ("by support", "support"))


def cause(reason: Optional[str]) -> str:
    text = (reason or "").lower()
    return next((c for key, c in _CAUSES if key in text), "requested")


def _meter():
    try:
        return activity.metric_meter()
    except RuntimeError:  # not in an activity (a tool calling the same code): nothing to record
        return None


def events(written: Iterable[tuple[str, Optional[str], Optional[str], dict]]) -> None:
    """(type, channel, node_id, data) of events just written."""
    meter = _meter()
    if meter is None:
        return
    orders = meter.create_counter("nodal_order_events", "Order events written, by type, channel and cause")
    fulfillments = meter.create_counter("nodal_fulfillment_events", "Fulfillment events written, by outcome and node")
    for kind, channel, node_id, data in written:
        group, _, what = kind.partition(".")
        if group == "order":
            orders.add(1, {"event": what, "channel": channel or "", "cause": cause(data.get("reason"))
                           if what in ("cancelled", "rejected") else ""})
        elif group == "fulfillment" and what != "tracking":
            fulfillments.add(1, {"outcome": what, "node": node_id or ""})


_AT_NODE = re.compile(r" at \S+$")


def reroutes(reasons: Iterable[str]) -> None:
    """Routing decisions after the first: what made the order re-source (rejected, timed_out, short pick, ...)."""
    meter = _meter()
    reasons = [r for r in reasons if r != "initial"]
    if meter is None or not reasons:
        return
    counter = meter.create_counter("nodal_reroutes", "Re-sourcings after the first routing decision, by cause")
    for r in reasons:
        counter.add(1, {"cause": _AT_NODE.sub("", r).replace(" ", "_")})


def routing_seconds(seconds: float, feasible: bool) -> None:
    meter = _meter()
    if meter is not None:
        meter.create_histogram_float("nodal_routing_plan", "Routing decision time (plan an order)", "seconds").record(
            seconds, {"feasible": str(feasible).lower()})


def reservation_conflict() -> None:
    meter = _meter()
    if meter is not None:
        meter.create_counter("nodal_reservation_conflicts", "Reservations refused: the stock went between plan and "
                             "reserve").add(1)
