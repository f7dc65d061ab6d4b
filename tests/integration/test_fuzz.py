"""Schemathesis against the app's OpenAPI: no generated request, valid or not, from any role, alone or in a
sequence that follows the API's links (place → read → modify / cancel / return, hold → release, fulfillment →
milestones), gets a 5xx; every 4xx says what is wrong; what a 201 created can be read back.

It runs on a database of its own holding the demo catalog and network, with a worker of its own on its own task
queue (short remorse window, so orders reach their nodes during the run): the fuzzer's admin requests (global
rules, forecasts) cannot touch the other tests. The seed changes from run to run (NODAL_FUZZ_SEED repeats one);
a failure prints it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from nodal.ports import free_port
from api.auth import ensure_admin_key
from launcher.seed import DEMO_AREAS, demo_skus, seed_demo
from launcher.worker import build_worker
from nodal.db import Database
from nodal.migrate import upgrade
from tests.integration.conftest import ADMIN_KEY, Api, settings_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("NODAL_FUZZ_EXAMPLES", "6"))
CHANNEL = "fuzz-web"


async def _keys(api: Api) -> list[tuple[str, str]]:
    return [("admin", ADMIN_KEY), ("support", await api.key("support")),
            ("client", await api.key("client", channel=CHANNEL)),
            ("client_other", await api.key("client", channel="fuzz-marketplace")),
            ("partner", await api.key("partner", node_id="DC-EAST")),
            ("partner_other", await api.key("partner", node_id="ST-NYC")),
            ("carrier", await api.key("carrier", carrier="ups"))]


async def test_no_generated_request_or_sequence_gets_a_5xx_and_every_4xx_says_why(pg_url, temporal_env, tmp_path):
    seed = int(os.environ.get("NODAL_FUZZ_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"fuzz seed {seed} (NODAL_FUZZ_SEED={seed} repeats this run)")
    url = make_url(pg_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS nodal_fuzz"))
        conn.execute(text("CREATE DATABASE nodal_fuzz"))
    admin.dispose()
    fuzz_url = url.set(database="nodal_fuzz").render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, fuzz_url)
    db = Database(fuzz_url)
    await ensure_admin_key(db, ADMIN_KEY)
    await seed_demo(db)
    settings = settings_for(fuzz_url, task_queue="nodal-fuzz", rate_limit_per_second=0, rate_limit_per_address=0,
                            remorse_window="1s")
    worker = build_worker(temporal_env.client, settings, db)
    working = asyncio.create_task(worker.run())
    app = create_app(settings, db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            keys = await _keys(Api(http))
        tally = tmp_path / "answers.jsonl"
        catalog = {"channel": CHANNEL, "skus": demo_skus(), "postal_codes": sorted(p for p, a in DEMO_AREAS.items() if a[2])}
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
            "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "not_a_server_error,a_4xx_says_what_is_wrong,ensure_resource_availability,"
            "response_schema_conformance,status_code_conformance,content_type_conformance",
            "--mode", "all", "--max-examples", str(EXAMPLES), "--phases", "examples,coverage,fuzzing,stateful",
            "--workers", "1", "--seed", str(seed), "--request-timeout", "30",
            "--suppress-health-check", "all", "--no-color",
            cwd=ROOT, env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
                           "PYTHONPATH": str(ROOT), "NODAL_FUZZ_SEED": str(seed),
                           "NODAL_FUZZ_KEYS": json.dumps(keys), "NODAL_FUZZ_CATALOG": json.dumps(catalog),
                           "NODAL_FUZZ_TALLY": str(tally)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        report = out.decode()
        print(report[-4000:])
        assert proc.returncode == 0, f"fuzz seed {seed}:\n" + report[-8000:]
        # The catalog and the links were in play: orders placed and read back by the ids their answers gave, holds
        # made and released, every role heard from.
        async with db.engine.connect() as conn:
            placed = (await conn.execute(text("SELECT COUNT(*) FROM orders"))).scalar_one()
            released = (await conn.execute(text("SELECT COUNT(*) FROM fulfillments"))).scalar_one()
        calls = [json.loads(line) for line in tally.read_text().splitlines()]
        ok = Counter((method, path) for _, method, path, status in calls if status < 300)
        roles = Counter(role for role, *_ in calls)
        print(f"fuzz seed {seed}: {len(calls)} calls by {dict(roles)}; {placed} orders placed, {released} "
              f"fulfillments released; reads by linked id: {ok[('GET', '/orders/{order_id}')]} orders, "
              f"{ok[('GET', '/holds/{hold_id}')]} holds")
        assert placed > 0, "no generated order was placed: the fuzzer never got past validation"
        assert ok[("GET", "/orders/{order_id}")] and ok[("DELETE", "/holds/{hold_id}")], "no link was followed"
        assert set(roles) == {r for r, _ in keys}, roles
    finally:
        server.should_exit = True
        await serving
        await worker.shutdown()
        await asyncio.gather(working, return_exceptions=True)
        await db.dispose()
