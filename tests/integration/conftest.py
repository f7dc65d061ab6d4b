"""Fixtures for integration tests: real Temporal, real Postgres, the worker and the API in-process."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import httpx
from sqlalchemy import text
import pytest

from api.app import create_app
from api.auth import ensure_admin_key
from nodal.db import Database, make_engine
from nodal.settings import Settings
from launcher.skipping import start_skipping_server
from launcher.worker import build_worker

ADMIN_KEY = "test-admin-7Kq2xW9mZr4TnV8cLp3J"
TASK_QUEUE = "nodal-test"

pytestmark = pytest.mark.integration


def settings_for(pg_url: str, **over: Any) -> Settings:
    # The tracking page's limit per client address is off: every test calls from one address (a test of the limit
    # sets it).
    return Settings(**{"database_url": pg_url, "task_queue": TASK_QUEUE, "admin_key": ADMIN_KEY,
                       "adapter_latency_ms": 1, "track_per_minute": 0, **over})


@pytest.fixture(scope="session")
async def temporal_env(pg_url):
    # Large payloads go to the test database, as in production (nodal/payloads.py).
    payloads = make_engine(pg_url, pool_size=2, max_overflow=4)
    # Workflows start with their clock stopped; a test moves one with env.fast_forward(handle, d).
    env = await start_skipping_server(settings_for(pg_url), payloads)
    yield env
    await env.shutdown()
    await payloads.dispose()


@pytest.fixture(scope="session")
async def db(pg_url):
    database = Database(pg_url)
    await ensure_admin_key(database, ADMIN_KEY)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def settings(pg_url) -> Settings:
    return settings_for(pg_url)


@pytest.fixture(scope="session")
async def worker(temporal_env, db, settings):
    w = build_worker(temporal_env.client, settings, db)
    task = asyncio.create_task(w.run())
    yield w
    await w.shutdown()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="session")
async def api(temporal_env, db, settings, worker):
    app = create_app(settings, db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal",
                                 timeout=60) as client:
        yield Api(client)


@asynccontextmanager
async def own_stack(temporal_env, db, pg_url: str, queue: str, interceptors=(), client=None,
                    **over: Any) -> AsyncIterator["Api"]:
    """A worker (with these interceptors and settings) and an API of its own, on their own task queue; ``client``:
    a Temporal client of the test's own (a runtime, interceptors) instead of the environment's."""
    settings = settings_for(pg_url, task_queue=queue, **over)
    client = client or temporal_env.client
    running: list = []

    async def start() -> None:
        worker = build_worker(client, settings, db, interceptors=list(interceptors))
        running[:] = [worker, asyncio.create_task(worker.run())]

    async def stop() -> None:
        await running[0].shutdown()
        await asyncio.gather(running[1], return_exceptions=True)

    @asynccontextmanager
    async def worker_down() -> AsyncIterator[None]:
        """No worker on the queue inside: what is sent meanwhile waits for the next one's first workflow task."""
        await stop()
        try:
            yield
        finally:
            await start()

    await start()
    app = create_app(settings, db=db, temporal=client)
    app.state.db, app.state.temporal = db, client
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal",
                                     timeout=60) as http:
            api = Api(http, settings)
            api.worker_down = worker_down
            yield api
    finally:
        await stop()


class Api:
    """The HTTP API with keys at hand."""

    def __init__(self, client: httpx.AsyncClient, settings: Optional[Settings] = None):
        self.client, self.settings = client, settings
        # own_stack's: a context in which its worker is down.
        self.worker_down: Optional[Callable[[], Any]] = None

    async def call(self, method: str, path: str, key: Optional[str] = ADMIN_KEY, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return await self.client.request(method, path, headers=headers, **kw)

    async def ok(self, method: str, path: str, key: Optional[str] = ADMIN_KEY, expect: int | tuple = (200, 201),
                 **kw) -> Any:
        r = await self.call(method, path, key, **kw)
        allowed = expect if isinstance(expect, tuple) else (expect,)
        assert r.status_code in allowed, f"{method} {path} → {r.status_code}: {r.text}"
        return r.json()

    async def key(self, role: str, **kw) -> str:
        return (await self.ok("POST", "/api-keys", json={"role": role, **kw}))["key"]


async def tables_holding(db, secret: str) -> list[str]:
    """The tables of the schema with a row whose text contains ``secret`` (a key must be in none)."""
    async with db.engine.connect() as conn:
        tables = [r[0] for r in await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"))]
        return [t for t in tables if (await conn.execute(text(
            f"SELECT 1 FROM {t} x WHERE strpos(x::text, :k) > 0 LIMIT 1"), {"k": secret})).first()]


async def send_and_crash(api: Api, monkeypatch, method: str, path: str, body, key: Optional[str] = ADMIN_KEY):
    """Send with a fresh Idempotency-Key as if the API process died once the route had done its work, before the
    guard kept the answer (nothing of the guard's own record is written). Returns the key and the answer."""
    from api import idempotency

    async def died(*_a, **_k):
        return None
    idem = f"crash-{uuid.uuid4().hex[:10]}"
    with monkeypatch.context() as m:
        m.setattr(idempotency, "finish", died)
        return idem, await api.call(method, path, key=key, json=body, headers={"Idempotency-Key": idem})


async def retry_after_crash(api: Api, db, idem: str, method: str, path: str, body, key: Optional[str] = ADMIN_KEY):
    """The client's retry once the crashed request's claim is stale (over a minute old)."""
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE idempotent_requests SET created_at = created_at - interval '2 minutes'"
                                " WHERE idempotency_key = :i"), {"i": idem})
    return await api.call(method, path, key=key, json=body, headers={"Idempotency-Key": idem})


async def temporal_cli(temporal_env, *args: str) -> tuple[int, dict]:
    """The Temporal CLI as support staff run it, against the test's server, answering JSON (-o json)."""
    import json

    from launcher.skipping import temporal_binary
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, "--address", temporal_env.client.service_client.config.target_host, "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    try:
        return proc.returncode, json.loads(out[out.index("{"):])
    except ValueError:
        return proc.returncode, {"output": out}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition") -> Any:
    """Poll until ``check`` returns something truthy (the read model follows the workflow)."""
    deadline = asyncio.get_event_loop().time() + timeout
    last = None
    while asyncio.get_event_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


# ---------------------------------------------------------------- a small network per test
@dataclass
class Net:
    prefix: str
    channel: str
    client_key: str
    postal_code: str
    skus: list[str]

    def node(self, name: str) -> str:
        return f"{self.prefix}-{name}"


# Around Chicago: the customer is downtown; STORE serves the customer's postal code, DC-N is
# close, DC-S is far (Dallas).
NODES = {
    "STORE": dict(type="store", lat=41.88, lon=-87.63, capabilities=["ship", "pickup"]),
    "DC-N": dict(type="dc", lat=41.60, lon=-88.10, capabilities=["ship"]),
    "DC-S": dict(type="dc", lat=32.78, lon=-96.80, capabilities=["ship"]),
}


async def make_network(api: Api, stock: dict[str, dict[str, int]] | None = None,
                       nodes: dict[str, dict] | None = None) -> Net:
    prefix = "t" + uuid.uuid4().hex[:8]
    postal = f"{prefix}-60601"
    nodes = nodes or NODES
    for name, spec in nodes.items():
        await api.ok("PUT", f"/nodes/{prefix}-{name}", json={
            "name": name, "postal_code": postal, "handling_cost": "0.50", "processing_time": "1h",
            "cutoff_time": "16:00", "timezone": "America/Chicago", **spec})
    await api.ok("PUT", "/service-areas", json=[{
        "postal_code": postal, "lat": 41.8781, "lon": -87.6298,
        "nodes": [{"node_id": f"{prefix}-{n}", "priority": 1} for n, s in nodes.items() if s["type"] == "store"]}])
    skus = [f"{prefix}-SKU{i}" for i in range(1, 4)]
    for s in skus:
        await api.ok("PUT", f"/skus/{s}", json={"name": f"Item {s}", "weight_kg": 1.0})
    stock = stock if stock is not None else {"DC-N": {"SKU1": 10, "SKU2": 10, "SKU3": 10},
                                             "DC-S": {"SKU1": 10, "SKU2": 10, "SKU3": 10}}
    for name, items in stock.items():
        await api.ok("PUT", f"/inventory/{prefix}-{name}", json={
            "as_of": "2026-01-01T00:00:00Z",
            "items": [{"sku": f"{prefix}-{s}", "on_hand": q} for s, q in items.items()]})
    channel = f"{prefix}-web"
    client_key = await api.key("client", channel=channel)
    return Net(prefix, channel, client_key, postal, skus)


def order_body(net: Net, lines: list[tuple[str, int]], external_id: str | None = None, **extra: Any) -> dict:
    return {
        "external_id": external_id or uuid.uuid4().hex,
        "channel": net.channel,
        "customer": {"id": "cust-1", "email": "jane.doe@example.com"},
        "lines": [{"line_id": f"L{i + 1}", "sku": f"{net.prefix}-{sku}", "qty": qty, "unit_price": "10.00",
                   "delivery": {"method": "ship_standard",
                                "address": {"postal_code": net.postal_code, "line1": "1 Main St"}}}
                  for i, (sku, qty) in enumerate(lines)],
        **extra,
    }
