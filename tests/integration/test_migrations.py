"""The migrations build exactly the schema the models describe (a model change without its migration fails)."""

from __future__ import annotations

import pytest
from alembic import command

from nodal.migrate import alembic_config

pytestmark = pytest.mark.integration


def test_models_and_migrations_agree(pg_url):
    command.check(alembic_config(pg_url))  # raises when autogenerate would write an operation


def test_feed_events_already_applied_move_into_their_nodes_namespace(pg_url):
    """After the upgrade a feed that re-sends an adjustment it sent before still finds it a duplicate: the
    rows written under the bare id move to feed:{node}:{id}; the system's own rows and snapshots stay."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from nodal.migrate import upgrade

    name = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, "0019")
        rows = [("count-7", "key-1", "cycle count"), ("snapshot:DC:S:2026", "key-1", "snapshot"),
                ("restock:O-R1:L1", "system", "return_restock"), ("insp-1:out", "key-1", "inspected_sellable")]
        with psycopg.connect(url, autocommit=True) as conn:
            for event_id, actor, reason in rows:
                conn.execute("INSERT INTO inventory_ledger (node_id, sku, on_hand_delta, reserved_delta, reason,"
                             " event_id, actor, at) VALUES ('DC', 'S', 1, 0, %s, %s, %s, now())",
                             (reason, event_id, actor))
        upgrade(url)
        with psycopg.connect(url) as conn:
            ids = sorted(r[0] for r in conn.execute("SELECT event_id FROM inventory_ledger"))
        assert ids == sorted(["feed:DC:count-7", "snapshot:DC:S:2026", "restock:O-R1:L1", "feed:DC:insp-1:out"])
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_upgrades_side_by_side_in_one_process_each_reach_head(pg_url):
    """Stacks started side by side in threads (the chaos harness) migrate at once: Alembic's context is a module
    global, and two upgrades at once ran on each other's connections and hung or failed."""
    import threading
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from nodal.migrate import upgrade

    names = [f"mig_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    urls = [make_url(pg_url).set(database=n).render_as_string(hide_password=False) for n in names]
    failures: list[str] = []

    def run(url: str) -> None:
        try:
            upgrade(url)
        except Exception as e:  # noqa: BLE001 (reported below)
            failures.append(repr(e))
    try:
        threads = [threading.Thread(target=run, args=(u,), daemon=True) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in threads), "an upgrade hung"
        assert not failures, failures
        heads = set()
        for url in urls:
            with psycopg.connect(url) as conn:
                heads.add(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])
        from alembic.script import ScriptDirectory
        assert heads == {ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()}
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
