"""Promise accuracy: how often the promised date is kept when partners and carriers are late now and then.

    python bench/promise_accuracy.py [--orders 20000] [--seed 1]

Orders arrive at random times over eight weeks (holidays included) from random destinations; each is
promised by the product's promise engine (promise.quote, buffer policy included) from the nearest of a
few nodes. Then it is executed with stochastic delays: the node misses its cutoff now and then (more often
for stores), and the carrier takes a day or two longer, or a day less, with the probabilities below. The
parcel's actual delivery day is counted on the same node and carrier calendars.

accuracy = delivered on or before the promised date / delivered; slack = promised day − delivered day.
Printed for each buffer policy, beside the unbuffered promise measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.status import DeliveryMethod  # noqa: E402
from promise import DEFAULT_CALENDAR, SERVICES, quote  # noqa: E402
from promise.dates import BUFFER_POLICIES, PRODUCT_BUFFER, delivered_on, ship_days  # noqa: E402
from routing.geo import haversine_km  # noqa: E402
from routing.model import NodeInfo  # noqa: E402

NODES = [
    NodeInfo("DC-EAST", "dc", 40.2, -74.8, frozenset({"ship"}), processing_minutes=120, cutoff_time="16:00",
             timezone="America/New_York", closed_weekdays=frozenset({6})),
    NodeInfo("DC-CENTRAL", "dc", 39.1, -94.6, frozenset({"ship"}), processing_minutes=120, cutoff_time="16:00",
             timezone="America/Chicago", closed_weekdays=frozenset({6})),
    NodeInfo("DC-WEST", "dc", 34.0, -117.6, frozenset({"ship"}), processing_minutes=120, cutoff_time="15:00",
             timezone="America/Los_Angeles", closed_weekdays=frozenset({6})),
    NodeInfo("STORE-CHI", "store", 41.9, -87.6, frozenset({"ship"}), processing_minutes=180, cutoff_time="14:00",
             timezone="America/Chicago", hours=("10:00", "20:00")),
    NodeInfo("STORE-ATL", "store", 33.7, -84.4, frozenset({"ship"}), processing_minutes=180, cutoff_time="14:00",
             timezone="America/New_York", hours=("10:00", "20:00")),
]
# The node misses the ship-by it was given (a late pick, a missed truck): ships at its next cutoff.
MISSED_CUTOFF = {"dc": 0.03, "store": 0.08}
# Carrier transit against the zone's days: (extra days, probability).
TRANSIT_NOISE = [(-1, 0.04), (0, 0.84), (1, 0.10), (2, 0.02)]


def simulate(orders: int, seed: int, policy: str) -> tuple[float, float, list[int]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    slacks: list[int] = []
    for _ in range(orders):
        at = start + timedelta(minutes=rng.randrange(56 * 24 * 60))
        lat, lon = rng.uniform(26, 48), rng.uniform(-122, -71)
        method = DeliveryMethod.ship_express if rng.random() < 0.15 else DeliveryMethod.ship_standard
        node = min(NODES, key=lambda n: haversine_km(n.lat, n.lon, lat, lon))
        km = haversine_km(node.lat, node.lon, lat, lon)
        q = quote(node, method, km, at, buffer=policy)
        assert q is not None and q.ship_by is not None
        service = next(s for s in SERVICES[method] if (s.carrier, s.service) == (q.carrier, q.service))
        shipped = q.ship_by
        if rng.random() < MISSED_CUTOFF[node.type]:
            shipped = next(c for c in ship_days(node, q.ship_by + timedelta(minutes=1), service) if c > q.ship_by)
        extra = rng.choices([d for d, _ in TRANSIT_NOISE], [p for _, p in TRANSIT_NOISE])[0]
        planned = service.transit_days(km)
        arrived = delivered_on(service, node, shipped, km, DEFAULT_CALENDAR, days=max(planned + extra, 1))
        slacks.append((q.promised_by.date() - arrived).days)
    kept = sum(1 for s in slacks if s >= 0) / len(slacks)
    return kept, statistics.median(slacks), slacks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{args.orders} orders over 8 weeks from {len(NODES)} nodes; missed cutoffs {MISSED_CUTOFF}, "
          f"carrier extra days {TRANSIT_NOISE}")
    print(f"  {'buffer policy':14} {'kept':>7} {'median slack':>13} {'mean slack':>11} {'late by ≥2 d':>13}")
    base = None
    for policy in BUFFER_POLICIES:
        kept, median, slacks = simulate(args.orders, args.seed, policy)
        base = base if base is not None else kept
        late2 = sum(1 for s in slacks if s <= -2) / len(slacks)
        print(f"  {policy:14} {kept:7.2%} {median:10.1f} d {statistics.mean(slacks):8.2f} d {late2:12.2%}"
              f"   (kept / unbuffered {kept / base:.3f})")
    print(f"target: ≥ 95% kept with median slack ≤ 1 day (the product promises with {PRODUCT_BUFFER!r})")


if __name__ == "__main__":
    main()
