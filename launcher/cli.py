"""The `nodal` command."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import typer

app = typer.Typer(help="Nodal: distributed order management on Temporal and PostgreSQL.", no_args_is_help=True)

# `nodal dev --demo` should show orders moving within a minute, so its windows are short unless set.
DEMO_WINDOWS = {"NODAL_REMORSE_WINDOW": ("remorse_window", timedelta(seconds=15)),
                "NODAL_ACCEPT_TIMEOUT": ("accept_timeout", timedelta(seconds=45)),
                "NODAL_RETURN_WINDOW": ("return_window", timedelta(minutes=3)),
                "NODAL_PICKUP_HOLD": ("pickup_hold", timedelta(minutes=2)),
                "NODAL_PICKUP_REMINDER": ("pickup_reminder", timedelta(seconds=30))}


@app.command()
def dev(
    demo: bool = typer.Option(False, "--demo", help="Also place demo orders and play the partners."),
    orders_per_minute: int = typer.Option(30, help="Demo order rate."),
    logs: bool = typer.Option(False, "--logs", help="Print log lines here instead of the status board "
                                                    "(in a terminal the logs go to NODAL_HOME/logs/nodal.log)."),
) -> None:
    """Run the whole stack on embedded defaults: Temporal dev server, PostgreSQL, worker, API, demo network."""
    from launcher.dev import run_dev
    from nodal.settings import Settings

    settings = Settings()
    if demo:
        for env, (field, value) in DEMO_WINDOWS.items():
            if env not in os.environ:
                setattr(settings, field, value)
    asyncio.run(run_dev(settings, demo, orders_per_minute, show_logs=logs))


@app.command()
def simulate(
    days: int = typer.Option(14, "--days", min=1, max=120, help="Simulated days."),
    seed: int = typer.Option(1, "--seed", help="The same seed, the same demand and partner behaviour."),
    network: Path = typer.Option(None, "--network", exists=True, dir_okay=False, readable=True,
                                 help="A JSON scenario: any of its sections (network, demand, partners, carriers, "
                                      "returns) replaces the default's."),
    out: Path = typer.Option(Path(".nodal/simulation"), "--out", help="Where kpis.json, orders.csv and report.html go."),
    concurrency: int = typer.Option(24, min=1, max=200, help="Orders in flight at once."),
    workers: int = typer.Option(1, min=1, max=8, help="Worker processes."),
) -> None:
    """Days of a network through the real workflows and API on a fresh embedded stack, with time skipping; prints
    and writes the KPIs (JSON and an HTML report)."""
    from rich.console import Console
    from rich.table import Table

    from launcher.simulate import goals_met, simulate as run

    console = Console(stderr=True)
    k = asyncio.run(run(days, seed, network, out, concurrency=concurrency, workers=workers, console=console))
    met = goals_met(k)
    table = Table(title=f"{days} days, seed {seed}: {k['orders']} orders in {k['wall_seconds']} s")
    for col in ("KPI", "measured", "goal", ""):
        table.add_column(col)
    for name, goal in k["goals"].items():
        table.add_row(name, str(k[name]), goal, "[green]met[/]" if met[name] else "[red]missed[/]")
    for name in ("cancellation_by_cause", "split_rate", "cost_per_order", "reroutes_per_order", "finished"):
        table.add_row(name, str(k[name]), "", "")
    Console().print(table)
    console.print(f"report: {out / 'report.html'}  figures: {out / 'kpis.json'}  orders: {out / 'orders.csv'}")


@app.command()
def worker() -> None:
    """Run a worker against NODAL_TEMPORAL_ADDRESS and NODAL_DATABASE_URL."""
    from nodal.db import Database, resolve_database_url
    from nodal.logging import configure_logging, get_logger
    from nodal.settings import Settings
    from launcher.worker import build_worker, ensure_schedules
    from nodal.client import connect, metrics_runtime
    from nodal.telemetry import start_tracing

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    start_tracing("nodal-worker")  # off unless the OTEL_ variables ask for it

    async def main() -> None:
        # No pre-ping per checkout: a stale connection fails the activity, which is retried on a fresh one.
        db = Database(resolve_database_url(settings), pre_ping=False)
        runtime = metrics_runtime(settings.worker_metrics_address) if settings.worker_metrics_address else None
        client = await connect(settings, db=db, runtime=runtime)
        w = build_worker(client, settings, db)
        await ensure_schedules(client, settings)
        get_logger().info("worker.started", task_queue=settings.task_queue)
        try:
            await w.run()
        finally:
            await db.dispose()

    asyncio.run(main())


@app.command()
def api(host: str = typer.Option(None), port: int = typer.Option(None),
        workers: int = typer.Option(None, help="server processes (default NODAL_API_WORKERS)")) -> None:
    """Serve the HTTP API against NODAL_TEMPORAL_ADDRESS and NODAL_DATABASE_URL."""
    import uvicorn

    from nodal.settings import Settings

    settings = Settings()
    # uvloop and httptools when installed (they are dependencies): several times the requests per core.
    uvicorn.run("api.app:create_app", factory=True, host=host or settings.api_host, port=port or settings.api_port,
                workers=workers or settings.api_workers, log_level="warning", access_log=False,
                log_config=None)  # uvicorn's loggers go through ours (nodal/logging.py: redacted)


@app.command("api-reference")
def api_reference() -> None:
    """Print the API reference in markdown, from the OpenAPI (docs/API.md is this output)."""
    from api.app import create_app
    from launcher.apidoc import render
    from nodal.settings import Settings

    sys.stdout.write(render(create_app(Settings()).openapi()))


@app.command()
def route(stdio: bool = typer.Option(False, "--stdio", help="speak the routing benchmark's JSON lines"),
          resolve_every: int = typer.Option(100, help="orders between re-pricing stock from the forecast"),
          max_splits: int = typer.Option(2, help="nodes an order may be split across, beyond the first"),
          forecast: bool = typer.Option(True, help="price scarce stock from the demand forecast"),
          inline_pricing: bool = typer.Option(False, help="solve the forecast LP in line: reproducible runs,"
                                              " but the orders that trigger a solve wait for it"),
          budget_ms: float = typer.Option(None, help="search budget per order (default: exhaustive)")) -> None:
    """The sourcing engine on stdin/stdout (bench/ROUTING.md), the same code the workflow uses."""
    if not stdio:
        raise typer.BadParameter("only --stdio is supported")
    from routing.stdio import serve

    # The protocol owns stdout: whatever a library prints there (HiGHS' banner) goes to stderr instead.
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    serve(out=protocol, resolve_every=resolve_every, max_splits=max_splits, use_forecast=forecast, background=not inline_pricing,
          budget_ms=budget_ms)


@app.command()
def migrate() -> None:
    """Apply database migrations to NODAL_DATABASE_URL (or the embedded database)."""
    from nodal.db import resolve_database_url
    from nodal.migrate import upgrade
    from nodal.settings import Settings

    upgrade(resolve_database_url(Settings()))
    typer.echo("database is at the latest schema")


@app.command()
def seed() -> None:
    """Load the demo network (nodes, service areas, SKUs, stock) into the database. Idempotent."""
    from nodal.db import Database, resolve_database_url
    from launcher.seed import seed_demo
    from nodal.settings import Settings

    async def main() -> None:
        db = Database(resolve_database_url(Settings()))
        try:
            typer.echo(await seed_demo(db))
        finally:
            await db.dispose()

    asyncio.run(main())


inventory_app = typer.Typer(help="Inventory feeds.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")


@inventory_app.command("import")
def inventory_import(path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                                 help="CSV with node,sku,on_hand[,safety_stock]")) -> None:
    """Load stock positions from a CSV in one transaction (COPY); a bad line rejects the whole file."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from inventory.bulk import ImportRejected, import_csv
    from nodal.db import resolve_database_url
    from nodal.settings import Settings

    url = resolve_database_url(Settings())
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task(f"importing {path.name}", total=path.stat().st_size)
        try:
            result = import_csv(url, path, progress=lambda n: bar.advance(task, n))
        except ImportRejected as e:
            bar.stop()
            typer.echo(f"rejected {path}: {e} — nothing was imported", err=True)
            raise typer.Exit(1)
    typer.echo(f"imported {result.rows} positions ({result.created} new, {result.changed} changed on hand)")


def main() -> None:
    """The `nodal` command, ended without the interpreter's teardown (nodal/client.py exit_without_teardown)."""
    try:
        app()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    from nodal.client import exit_without_teardown
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
