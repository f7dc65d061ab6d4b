"""Inventory never oversells and every unit is accounted for, under races and random operation sequences."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from inventory import service
from inventory.arithmetic import ATS_SQL
from nodal.db import Database

pytestmark = pytest.mark.integration


async def _network(db: Database, node: str, skus: list[str]) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO nodes (node_id, name, type, lat, lon, postal_code, capabilities, enabled, handling_cost,"
            " processing_time_minutes, cutoff_time, timezone, calendar) VALUES (:n, :n, 'dc', 0, 0, '',"
            " '[\"ship\"]', true, 0, 60, '15:00', 'UTC', '{}') ON CONFLICT DO NOTHING"), {"n": node})
        for s in skus:
            await conn.execute(text("INSERT INTO skus (sku, name, weight_kg, oversized, hazmat, digital, ship_alone,"
                                    " allowed_node_types) VALUES (:s, :s, 1, false, false, false, false, '[]')"
                                    " ON CONFLICT DO NOTHING"), {"s": s})


async def test_racing_processes_never_oversell(db, pg_url):
    node, sku = f"race-{uuid.uuid4().hex[:6]}", f"race-sku-{uuid.uuid4().hex[:6]}"
    await _network(db, node, [sku])
    async with db.engine.begin() as conn:
        await service.adjust(conn, node, sku, 50, "receipt", f"{node}:receipt")
    # Four processes, fifty concurrent reservations each, for fifty units.
    procs = [subprocess.Popen([sys.executable, "-m", "tests.integration.race_worker", pg_url, node, sku,
                               f"{node}-p{p}", "50"], stdout=subprocess.PIPE, text=True) for p in range(4)]
    landed = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(landed) == 50, landed
    async with db.engine.connect() as conn:
        pos = (await conn.execute(text(f"SELECT on_hand, reserved, {ATS_SQL} AS ats FROM inventory_positions"
                                       " WHERE node_id = :n AND sku = :s"), dict(n=node, s=sku))).one()
        rows = (await conn.execute(text("SELECT COALESCE(SUM(qty), 0) FROM reservations WHERE node_id = :n"
                                        " AND status = 'held'"), {"n": node})).scalar_one()
    assert (pos.on_hand, pos.reserved, pos.ats, rows) == (50, 50, 0, 50)


class InventoryMachine(RuleBasedStateMachine):
    """Random snapshots, adjustments, reservations, releases, shipments and returns on two positions."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = Database(self.url, pool_size=1, max_overflow=1)
        self.node = f"hyp-{uuid.uuid4().hex[:8]}"
        self.skus = [f"{self.node}-A", f"{self.node}-B"]
        self.held: dict[str, tuple[str, int]] = {}  # fulfillment id → (sku, qty)
        self.shipped: list[tuple[str, str, int]] = []
        self.n = 0
        self.clock = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.run(_network(self.db, self.node, self.skus))

    url = ""

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def tx(self, fn):
        async with self.db.engine.begin() as conn:
            return await fn(conn)

    def next_id(self) -> str:
        self.n += 1
        return f"{self.node}-{self.n}"

    @rule(i=st.integers(0, 1), qty=st.integers(0, 30), older=st.booleans())
    def snapshot(self, i, qty, older):
        self.clock += timedelta(minutes=-5 if older else 5)
        self.run(self.tx(lambda c: service.set_snapshot(c, self.node, self.skus[i], qty, None, self.clock, "test")))

    @rule(i=st.integers(0, 1), delta=st.integers(-20, 20), replay=st.booleans())
    def adjustment(self, i, delta, replay):
        eid = f"{self.node}-adj-{self.n if replay else self.next_id()}"
        self.run(self.tx(lambda c: service.adjust(c, self.node, self.skus[i], delta, "count", eid)))

    @rule(i=st.integers(0, 1), qty=st.integers(1, 8), safety=st.integers(0, 3))
    def reserve(self, i, qty, safety):
        fid = self.next_id()

        async def go(conn):
            await conn.execute(text("UPDATE inventory_positions SET safety_stock = :s WHERE node_id = :n AND sku = :k"),
                               dict(s=safety, n=self.node, k=self.skus[i]))
            short = await service.reserve(conn, "o", [service.Hold(fid, "L1", self.node, self.skus[i], qty)], datetime.now(timezone.utc))
            return not short

        if self.run(self.tx(go)):
            self.held[fid] = (self.skus[i], qty)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), part=st.booleans())
    def release(self, data, part):
        fid = data.draw(st.sampled_from(sorted(self.held)))
        sku, qty = self.held[fid]
        keep = qty // 2 if part else 0
        self.run(self.tx(lambda c: service.set_reserved_qty(c, "o", fid, "L1", keep, "cancel")))
        if keep:
            self.held[fid] = (sku, keep)
        else:
            del self.held[fid]

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def commit(self, data):
        fid = data.draw(st.sampled_from(sorted(self.held)))
        self.run(self.tx(lambda c: service.commit(c, "o", fid)))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def ship(self, data):
        fid = data.draw(st.sampled_from(sorted(self.held)))
        self.run(self.tx(lambda c: service.consume(c, "o", fid, ["L1"])))
        sku, qty = self.held.pop(fid)
        self.shipped.append((fid, sku, qty))

    @precondition(lambda self: self.shipped)
    @rule(data=st.data(), disposition=st.sampled_from(["sellable", "damaged", "pending_inspection"]))
    def restock_return(self, data, disposition):
        fid, sku, qty = data.draw(st.sampled_from(self.shipped))
        self.run(self.tx(lambda c: service.receive_units(c, self.node, sku, qty, disposition, "return_restock",
                                                         f"restock:{fid}")))

    @rule(i=st.integers(0, 1), qty=st.integers(1, 5), to=st.sampled_from(["sellable", "damaged"]))
    def inspect(self, i, qty, to):
        async def go(conn):
            try:
                async with conn.begin_nested():
                    await service.inspect(conn, self.node, self.skus[i], qty, to, self.next_id(), "inspector")
            except ValueError:
                pass  # fewer units pending than inspected: refused, nothing changes

        self.run(self.tx(go))

    @invariant()
    def books_balance(self):
        async def check(conn):
            return (await conn.execute(text(f"""
                SELECT p.sku, p.on_hand, p.reserved,
                  (SELECT COALESCE(SUM(qty), 0) FROM reservations r WHERE r.node_id = p.node_id AND r.sku = p.sku
                   AND r.status IN ('held', 'committed')) AS held,
                  (SELECT COALESCE(SUM(on_hand_delta), 0) FROM inventory_ledger g WHERE g.node_id = p.node_id
                   AND g.sku = p.sku AND g.disposition = 'sellable') AS ledger_on_hand,
                  p.damaged, p.pending_inspection,
                  (SELECT COALESCE(SUM(on_hand_delta), 0) FROM inventory_ledger g WHERE g.node_id = p.node_id
                   AND g.sku = p.sku AND g.disposition = 'damaged') AS ledger_damaged,
                  (SELECT COALESCE(SUM(on_hand_delta), 0) FROM inventory_ledger g WHERE g.node_id = p.node_id
                   AND g.sku = p.sku AND g.disposition = 'pending_inspection') AS ledger_pending,
                  (SELECT COALESCE(SUM(reserved_delta), 0) FROM inventory_ledger g WHERE g.node_id = p.node_id
                   AND g.sku = p.sku) AS ledger_reserved
                FROM inventory_positions p WHERE p.node_id = :n"""), {"n": self.node})).all()

        for r in self.run(self.tx(check)):
            # (A count may find fewer units than are held: reserved may exceed on hand, neither goes negative.)
            assert r.on_hand >= 0 and r.reserved >= 0, (r.on_hand, r.reserved)
            assert r.reserved == r.held, "reserved must equal the active reservation rows"
            assert r.on_hand == r.ledger_on_hand, "the ledger must explain on hand"
            assert r.reserved == r.ledger_reserved, "the ledger must explain reserved"
            assert (r.damaged, r.pending_inspection) == (r.ledger_damaged, r.ledger_pending)
            assert r.damaged >= 0 and r.pending_inspection >= 0
            mine = sum(q for s, q in self.held.values() if s == r.sku)
            assert r.held == mine

    def teardown(self):
        self.run(self.db.dispose())
        self.loop.close()


def test_inventory_invariants_hold_under_random_operations(pg_url):
    InventoryMachine.url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    test = InventoryMachine.TestCase
    test.settings = hsettings(max_examples=40, stateful_step_count=25, deadline=None,
                              suppress_health_check=list(HealthCheck))
    test("runTest").runTest()


async def test_a_snapshot_keeps_what_moved_after_its_count(db):
    node, sku = f"snap-{uuid.uuid4().hex[:6]}", f"snap-sku-{uuid.uuid4().hex[:6]}"
    await _network(db, node, [sku])
    t0 = datetime.now(timezone.utc) - timedelta(hours=1)
    async with db.engine.begin() as conn:
        assert await service.set_snapshot(conn, node, sku, 10, None, t0, "partner")
        assert not await service.reserve(conn, "o1", [service.Hold("f1", "L1", node, sku, 4)], datetime.now(timezone.utc))
        await service.consume(conn, "o1", "f1", ["L1"])  # 4 leave after the first count: 6 left
        assert not await service.reserve(conn, "o2", [service.Hold("f2", "L1", node, sku, 2)], datetime.now(timezone.utc))
    async with db.engine.begin() as conn:
        # A count taken before the shipment says 9 (one unit was missing): the shipment stays applied.
        assert await service.set_snapshot(conn, node, sku, 9, None, t0 + timedelta(seconds=1), "partner")
        # The same count again, or an older one, changes nothing.
        assert not await service.set_snapshot(conn, node, sku, 9, None, t0 + timedelta(seconds=1), "partner")
        assert not await service.set_snapshot(conn, node, sku, 50, None, t0, "partner")
        pos = (await conn.execute(text("SELECT on_hand, reserved FROM inventory_positions WHERE node_id = :n"),
                                  {"n": node})).one()
    assert (pos.on_hand, pos.reserved) == (5, 2)  # 9 counted − 4 shipped since; the hold of 2 is kept


@pytest.mark.parametrize("seed", range(6))
async def test_a_large_reservation_decides_as_its_lines_would_one_by_one(db, seed, monkeypatch):
    """Past BATCH_HOLDS lines a reservation is made per position: the same outcome, stock, rows and ledger as
    one statement per line, on the same stock; a retry changes nothing; a short position undoes everything."""
    import random

    rng = random.Random(seed)
    skus = [f"bulk-{seed}-{uuid.uuid4().hex[:4]}-{i}" for i in range(6)]
    stock = {s: rng.randint(0, 40) + (seed % 2) * 40 for s in skus}  # odd seeds: mostly enough
    holds = [(f"L{i}", skus[rng.randrange(len(skus))], rng.randint(1, 4)) for i in range(70)]
    outcomes = []
    for way, threshold in (("one by one", 10**9), ("per position", 0)):
        node = f"bulk-{way[:3]}-{uuid.uuid4().hex[:6]}"
        await _network(db, node, skus)
        async with db.engine.begin() as conn:
            for s, q in stock.items():
                await service.adjust(conn, node, s, q, "receipt", f"{node}:{s}:receipt")
        monkeypatch.setattr(service, "BATCH_HOLDS", threshold)
        batch = [service.Hold(f"{node}-F1", line, node, sku, q) for line, sku, q in holds]
        async with db.engine.begin() as conn:
            short = await service.reserve(conn, f"{node}-O", batch, datetime.now(timezone.utc))
        async with db.engine.begin() as conn:  # a retry of the same reservation: a no-op
            again = await service.reserve(conn, f"{node}-O", batch, datetime.now(timezone.utc))
        async with db.engine.connect() as conn:
            reserved = dict((await conn.execute(text(
                "SELECT sku, reserved FROM inventory_positions WHERE node_id = :n"), {"n": node})).all())
            rows = (await conn.execute(text(
                "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM reservations WHERE node_id = :n"), {"n": node})).one()
            ledger = (await conn.execute(text(
                "SELECT COUNT(*), COALESCE(SUM(reserved_delta), 0) FROM inventory_ledger WHERE node_id = :n"
                " AND reason = 'reserve'"), {"n": node})).one()
        outcomes.append((bool(short), bool(short) or not again, {s.split("-")[-1]: r for s, r in reserved.items()},
                         tuple(rows), tuple(ledger)))
    assert outcomes[0] == outcomes[1], outcomes
    wanted: dict[str, int] = {}
    for _, sku, q in holds:
        wanted[sku] = wanted.get(sku, 0) + q
    fits = all(wanted[s] <= stock[s] for s in wanted)
    assert outcomes[1][0] == (not fits)  # short exactly when some position cannot hold its lines


@pytest.mark.parametrize("seed", range(4))
async def test_a_large_shipment_consumes_as_its_lines_would_one_by_one(db, seed, monkeypatch):
    """Past BATCH_HOLDS lines a shipment is consumed in a few statements: the same stock, reservation rows and
    ledger as line by line, also when a count found fewer units than were held (lines take what is on hand in
    line order); a retry changes nothing."""
    import random

    rng = random.Random(seed)
    skus = [f"ship-{seed}-{uuid.uuid4().hex[:4]}-{i}" for i in range(5)]
    holds = [(f"L{i:03d}", skus[rng.randrange(len(skus))], rng.randint(0, 4)) for i in range(60)]
    outcomes = []
    for way, threshold in (("one by one", 10**9), ("in bulk", 0)):
        node = f"ship-{way[:3]}-{uuid.uuid4().hex[:6]}"
        await _network(db, node, skus)
        wanted: dict[str, int] = {}
        for _, sku, q in holds:
            wanted[sku] = wanted.get(sku, 0) + q
        async with db.engine.begin() as conn:
            for s in skus:
                await service.adjust(conn, node, s, wanted.get(s, 0) + 3, "receipt", f"{node}:{s}:receipt")
            assert not await service.reserve(conn, f"{node}-O", [service.Hold(f"{node}-F1", line, node, sku, q)
                                                                  for line, sku, q in holds], datetime.now(timezone.utc))
            await service.commit(conn, f"{node}-O", f"{node}-F1")
            # Counts that found fewer units than are held at two SKUs: what leaves is what is there.
            for s in skus[:2]:
                await conn.execute(text("UPDATE inventory_positions SET on_hand = :q WHERE node_id = :n AND sku = :s"),
                                   {"q": max(wanted.get(s, 0) - 5, 0), "n": node, "s": s})
        monkeypatch.setattr(service, "BATCH_HOLDS", threshold)
        shipped = [line for line, _, _ in holds][5:]  # five lines stay behind
        async with db.engine.begin() as conn:
            units = await service.consume(conn, f"{node}-O", f"{node}-F1", shipped)
        async with db.engine.begin() as conn:
            again = await service.consume(conn, f"{node}-O", f"{node}-F1", shipped)
        async with db.engine.connect() as conn:
            positions = sorted((s.split("-")[-1], oh, r) for s, oh, r in (await conn.execute(text(
                "SELECT sku, on_hand, reserved FROM inventory_positions WHERE node_id = :n"), {"n": node})).all())
            rows = sorted((l, st) for l, st in (await conn.execute(text(
                "SELECT line_id, status FROM reservations WHERE node_id = :n"), {"n": node})).all())
            ledger = sorted(tuple(x) for x in (await conn.execute(text(
                "SELECT r.line_id, l.on_hand_delta, l.reserved_delta FROM inventory_ledger l JOIN reservations r"
                " ON l.event_id = 'consume:' || r.reservation_id WHERE l.node_id = :n AND l.reason = 'ship'"),
                {"n": node})).all())
        outcomes.append((units, again, positions, rows, ledger))
    assert outcomes[0] == outcomes[1], outcomes
    units, again, positions, rows, _ = outcomes[1]
    assert units == sum(q for line, _, q in holds[5:]) and again == 0
    assert all(oh >= 0 and r >= 0 for _, oh, r in positions)
    assert {st for l, st in rows if l >= "L005"} <= {"consumed"} and {st for l, st in rows if l < "L005"} <= {"committed"}


@pytest.mark.parametrize("lines", [1, service.BATCH_HOLDS + 1], ids=["line_by_line", "in_bulk"])
async def test_a_retry_racing_its_own_attempt_is_not_told_the_stock_is_short(db, lines):
    """Two runs of the same reservation at once (a retry while the first attempt still runs) on a position that
    holds exactly enough: the one that waits for the other's lock must find the reservation made, not report a
    shortage (the order would re-source or be rejected for stock it holds)."""
    node, sku = f"race-{uuid.uuid4().hex[:6]}", f"race-sku-{uuid.uuid4().hex[:6]}"
    await _network(db, node, [sku])
    async with db.engine.begin() as conn:
        await service.adjust(conn, node, sku, lines, "receipt", f"{node}:receipt")
    oid = f"ORD-{uuid.uuid4().hex[:8]}"
    holds = [service.Hold(f"{oid}-F1", f"L{i}", node, sku, 1) for i in range(lines)]
    now = datetime.now(timezone.utc)
    async with db.engine.connect() as first:
        await first.begin()
        assert await service.reserve(first, oid, holds, now) == []

        async def retry():
            async with db.engine.begin() as conn:
                return await service.reserve(conn, oid, holds, now)
        racing = asyncio.create_task(retry())

        async def waiting() -> bool:  # the retry is blocked on the first attempt's row lock
            async with db.engine.connect() as conn:
                return bool((await conn.execute(text(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ))).first())
        for _ in range(200):
            if await waiting():
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the retry never waited for the first attempt")
        await first.commit()
    assert await racing == []
    async with db.engine.connect() as conn:
        reserved = (await conn.execute(text("SELECT reserved FROM inventory_positions WHERE node_id = :n AND sku = :s"),
                                       {"n": node, "s": sku})).scalar_one()
    assert reserved == lines  # held once
