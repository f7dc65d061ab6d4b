"""The demo network: 2 DCs, 10 stores and distributors with postal-code service areas, 50 SKUs, stock.

Idempotent: seeding twice leaves one network (upserts), and never resets stock that orders have moved.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from inventory import service
from models.tables import Node, PostalCode, ServiceArea, Sku
from nodal.db import Database

# (node_id, name, type, lat, lon, postal code, timezone, capabilities)
DEMO_NODES = [
    ("DC-EAST", "East DC (Allentown)", "dc", 40.6023, -75.4714, "18101", "America/New_York", ["ship"]),
    ("DC-WEST", "West DC (Reno)", "dc", 39.5296, -119.8138, "89501", "America/Los_Angeles", ["ship"]),
    ("ST-NYC", "Store Manhattan", "store", 40.7506, -73.9935, "10001", "America/New_York", ["ship", "pickup", "curbside", "same_day", "returns"]),
    ("ST-BOS", "Store Boston", "store", 42.3555, -71.0605, "02108", "America/New_York", ["ship", "pickup", "curbside", "returns"]),
    ("ST-PHL", "Store Philadelphia", "store", 39.9526, -75.1652, "19103", "America/New_York", ["ship", "pickup", "same_day"]),
    ("ST-CHI", "Store Chicago", "store", 41.8837, -87.6324, "60601", "America/Chicago", ["ship", "pickup", "curbside", "same_day", "returns"]),
    ("ST-LAX", "Store Los Angeles", "store", 34.0537, -118.2427, "90012", "America/Los_Angeles", ["ship", "pickup", "returns"]),
    ("ST-SFO", "Store San Francisco", "store", 37.7725, -122.4147, "94103", "America/Los_Angeles", ["ship", "pickup", "same_day", "returns"]),
    ("ST-SEA", "Store Seattle", "store", 47.6101, -122.3344, "98101", "America/Los_Angeles", ["ship", "pickup"]),
    ("ST-AUS", "Store Austin", "store", 30.2711, -97.7437, "78701", "America/Chicago", ["ship", "pickup"]),
    ("DS-MIA", "Distributor Miami", "distributor", 25.7743, -80.1937, "33131", "America/New_York", ["ship"]),
    ("DS-DEN", "Distributor Denver", "distributor", 39.7508, -104.9966, "80202", "America/Denver", ["ship"]),
]

# Postal codes customers order to, and the stores/distributors that serve them (priority order).
DEMO_AREAS = {
    "10001": (40.7506, -73.9972, ["ST-NYC", "ST-PHL"]),
    "11201": (40.6943, -73.9903, ["ST-NYC"]),
    "02108": (42.3576, -71.0637, ["ST-BOS", "ST-NYC"]),
    "19103": (39.9523, -75.1743, ["ST-PHL", "ST-NYC"]),
    "60601": (41.8858, -87.6181, ["ST-CHI"]),
    "60614": (41.9227, -87.6533, ["ST-CHI"]),
    "90012": (34.0614, -118.2385, ["ST-LAX"]),
    "94103": (37.7725, -122.4147, ["ST-SFO"]),
    "98101": (47.6114, -122.3305, ["ST-SEA"]),
    "78701": (30.2713, -97.7426, ["ST-AUS"]),
    "33131": (25.7664, -80.1891, ["DS-MIA"]),
    "80202": (39.7527, -104.9984, ["DS-DEN"]),
    "30303": (33.7525, -84.3915, []),
    "85004": (33.4515, -112.0685, []),
}

# Sold to distributors by the case too.
CASED = {"tee": {"case": 12, "pallet": 480}, "sock": {"case": 24}, "cap": {"case": 12}}
CATEGORIES = ["tee", "hoodie", "jacket", "sneaker", "cap", "backpack", "sock", "jean", "dress", "scarf"]


def demo_skus() -> list[str]:
    return [f"SKU-{c.upper()}-{i}" for c in CATEGORIES for i in range(1, 6)]


async def seed_demo(db: Database, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    async with db.engine.begin() as conn:
        nodes = [dict(node_id=n, name=name, type=t, lat=lat, lon=lon, postal_code=pc, timezone=tz, capabilities=caps,
                      enabled=True, units_per_day=(2000 if t == "dc" else 150),
                      handling_cost=(0.35 if t == "dc" else 1.25 if t == "store" else 0.60),
                      processing_time_minutes=(240 if t == "dc" else 60), cutoff_time=("17:00" if t == "dc" else "15:00"),
                      calendar={"closed_weekdays": [] if t == "dc" else [6], "holidays": ["2026-12-25"],
                                # The East DC releases B2B work asking for waves at these times.
                                **({"waves": ["08:00", "13:00", "18:00"]} if n == "DC-EAST" else {})},
                      updated_at=now)
                 for n, name, t, lat, lon, pc, tz, caps in DEMO_NODES]
        stmt = insert(Node.__table__).values(nodes)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["node_id"], set_={
            c: stmt.excluded[c] for c in nodes[0] if c != "node_id"}))
        codes = [dict(postal_code=pc, lat=lat, lon=lon) for pc, (lat, lon, _) in DEMO_AREAS.items()]
        stmt = insert(PostalCode.__table__).values(codes)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["postal_code"],
                                                      set_={"lat": stmt.excluded.lat, "lon": stmt.excluded.lon}))
        areas = [dict(postal_code=pc, node_id=n, priority=i + 1)
                 for pc, (_, _, served) in DEMO_AREAS.items() for i, n in enumerate(served)]
        await conn.execute(insert(ServiceArea.__table__).values(areas).on_conflict_do_nothing())
        skus = [dict(sku=s, name=s.replace("SKU-", "").replace("-", " ").title(), weight_kg=round(rng.uniform(0.2, 2.5), 2),
                     allowed_node_types=[], category=s.split("-")[1].lower(), updated_at=now,
                     pack_sizes=CASED.get(s.split("-")[1].lower(), {})) for s in demo_skus()]
        stmt = insert(Sku.__table__).values(skus)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["sku"], set_={
            "name": stmt.excluded.name, "category": stmt.excluded.category, "pack_sizes": stmt.excluded.pack_sizes}))
        positions = 0
        for node_id, _, t, *_ in DEMO_NODES:
            for s in demo_skus():
                qty = rng.randint(150, 400) if t == "dc" else (rng.randint(0, 12) if rng.random() < 0.7 else 0)
                # A receipt keyed by node and SKU: applied once, however often the demo is seeded.
                if await service.adjust(conn, node_id, s, qty, "initial_stock", f"seed:{node_id}:{s}",
                                        actor="seed"):
                    positions += 1
        # Stores keep two of everything for walk-in customers; jackets are bulky, DCs keep a few back.
        await conn.execute(text(
            "INSERT INTO safety_stock_defaults (scope, key, qty) VALUES ('node_type', 'store', 2),"
            " ('category', 'jacket', 3) ON CONFLICT DO NOTHING"))
        await service.apply_safety_defaults(conn)
    return {"nodes": len(nodes), "postal_codes": len(codes), "skus": len(skus), "positions": positions}
