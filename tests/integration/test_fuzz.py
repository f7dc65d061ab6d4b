"""Schemathesis against the app's OpenAPI: no generated request, valid or not, gets a 5xx, and every 4xx
says what is wrong. It runs on a database of its own, and its workflows go to a task queue no worker
polls, so the fuzzer's admin requests (global rules, forecasts) cannot touch the other tests."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.auth import ensure_admin_key
from nodal.db import Database
from nodal.migrate import upgrade
from tests.integration.conftest import ADMIN_KEY, settings_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("NODAL_FUZZ_EXAMPLES", "8"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_no_generated_request_gets_a_5xx_and_every_4xx_says_why(pg_url, temporal_env):
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
    app = create_app(settings_for(fuzz_url, task_queue="fuzz-no-worker", rate_limit_per_second=0,
                                      rate_limit_per_address=0), db=db,
                     temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "not_a_server_error,a_4xx_says_what_is_wrong", "--mode", "all",
            "--max-examples", str(EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
            "--seed", "1", "-H", f"Authorization: Bearer {ADMIN_KEY}", "--request-timeout", "30",
            "--suppress-health-check", "all", "--no-color",
            cwd=ROOT, env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
                           "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        report = out.decode()
        print(report[-3000:])
        assert proc.returncode == 0, report[-6000:]
    finally:
        server.should_exit = True
        await serving
        await db.dispose()
