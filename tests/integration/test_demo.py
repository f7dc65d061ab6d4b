"""`nodal dev --demo` plays the store flows: its driver, run against a real worker and API on a database of its
own (the demo network), gets pickups made ready and collected with the customer's code, curbside customers
checked in and served, pickups a store lacks the stock for shipped to it from a DC and received there, returns
taken over a store's counter and refunded there, and exchanges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from launcher.demo import DemoDriver
from launcher.dev import inbox
from launcher.seed import seed_demo
from nodal.db import Database
from nodal.migrate import upgrade
from tests.integration.conftest import ADMIN_KEY, eventually, own_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def demo_db(pg_url):
    name = f"demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    from api.auth import ensure_admin_key
    await ensure_admin_key(db, ADMIN_KEY)
    await seed_demo(db)
    try:
        yield db, url
    finally:
        await db.dispose()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_demo_plays_the_store_flows_and_exchanges(temporal_env, demo_db):
    db, url = demo_db
    async with own_stack(temporal_env, db, url, f"demo-{uuid.uuid4().hex[:6]}", remorse_window=timedelta(seconds=1),
                         accept_timeout=timedelta(seconds=30), return_window=timedelta(minutes=5)) as api:
        app = api.client._transport  # the in-process app the test stack serves
        driver = DemoDriver("http://nodal", ADMIN_KEY, orders_per_minute=400, seed=11, inbox=inbox(db),
                            transport=app, reject_rate=0.0, ignore_rate=0.0, no_show_rate=0.0,
                            in_store_return_rate=0.7, return_rate=0.6, exchange_rate=0.4, pace=0.3,
                            curbside_rate=0.25, pickup_rate=0.25, lost_rate=0.3, transit=0.2)
        stop = asyncio.Event()
        running = asyncio.create_task(driver.run(stop))

        seen_so_far: dict = {}

        async def played():
            async with db.engine.connect() as conn:
                r = (await conn.execute(text("""
                    SELECT COUNT(*) FILTER (WHERE kind = 'pickup' AND status = 'collected' AND method = 'pickup') AS pickup,
                           COUNT(*) FILTER (WHERE kind = 'pickup' AND status = 'collected' AND arrived_at IS NOT NULL)
                             AS curbside,
                           COUNT(*) FILTER (WHERE kind = 'transfer' AND status = 'received_at_store') AS transfers,
                           (SELECT COUNT(*) FROM returns WHERE method = 'in_store' AND status = 'refunded') AS boris,
                           (SELECT COUNT(*) FROM orders WHERE external_id LIKE '%:exchange:%') AS exchanges,
                           (SELECT COUNT(*) FROM order_lines WHERE uom = 'case') AS cases,
                           (SELECT COUNT(*) FROM orders WHERE credit_terms IS NOT NULL) AS on_account
                    FROM fulfillments"""))).one()
            # The driver counts what it did once the API answered it: both sides have seen each flow.
            seen_so_far.update(read_model=r._asdict(), driver=dict(driver.stats))
            seen = (driver.stats["received_at_store"] >= 1 and driver.stats["collected"] >= 2
                    and driver.stats["approved"] >= 1 and driver.stats["imported"] >= 1
                    and driver.stats["carrier_delivered"] >= 1 and driver.stats["carrier_lost"] >= 1)
            return r if seen and r.pickup and r.curbside and r.boris and r.transfers and r.exchanges and r.cases \
                and r.on_account else None

        try:
            # Typically 40-80 s on two shared cores; the flows come at the driver's random pace, slower under load.
            got = await eventually(played, timeout=180,
                                   what="pickup, curbside, ship to store, in-store returns and exchanges played")
        except AssertionError as e:
            raise AssertionError(f"{e}; so far: {seen_so_far}") from None
        finally:
            stop.set()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        counts = got._asdict()
        assert all(counts[k] >= 1 for k in ("pickup", "curbside", "boris", "transfers", "exchanges", "cases",
                                            "on_account")), counts
        kpis = await api.ok("GET", "/kpis")
        assert kpis["pickup"]["median_ready_minutes"] is not None, kpis["pickup"]
        assert kpis["pickup"]["median_arrival_to_collection_minutes"] is not None, kpis["pickup"]
