"""Starting order workflows: at placement, and again for intakes a crash left without a workflow."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from models.messages import OrderInput, Windows
from api.idempotency import purge as purge_idempotent_requests
from api.processes import ensure_event_processes
from nodal.db import Database
from nodal.intake import record_intake, start_options  # noqa: F401 (placement's own, as the routes know them)
from nodal.logging import get_logger
from nodal.payloads import purge as purge_payloads
from nodal.settings import Settings
from workflows.order import OrderWorkflow


def windows(settings: Settings) -> Windows:
    """The order's clocks and limits, fixed when it is placed."""
    s = settings
    return Windows(remorse=s.remorse_window, accept_timeout=s.accept_timeout, return_window=s.return_window,
                   max_reroutes=s.max_reroutes, max_fulfillment_lines=s.max_fulfillment_lines,
                   authorization_validity=s.authorization_validity, payment_hold=s.payment_hold,
                   history_limit=s.order_history_limit, pickup_hold=s.pickup_hold,
                   pickup_reminder=s.pickup_reminder, approval=s.approval_window)


async def start_orphaned_orders(db: Database, client: Client, settings: Settings,
                                older_than: timedelta = timedelta(seconds=30)) -> list[str]:
    """Start the workflow of every intake no workflow has recorded yet (the API died in between)."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT order_id, intake FROM orders WHERE version = 0 AND created_at < now() - :age"
            " ORDER BY created_at LIMIT 200"), {"age": older_than})).all()
    started = []
    for r in rows:
        # Each intake on its own: one that cannot be started (a bad row) must not hold back the rest.
        try:
            inp = OrderInput.model_validate(r.intake)
            await client.start_workflow(OrderWorkflow.run, **start_options(inp, settings.task_queue))
            started.append(r.order_id)
        except WorkflowAlreadyStartedError:
            pass
        except Exception as e:
            get_logger(order_id=r.order_id).warning("orders.recovery_skipped", error=type(e).__name__)
    if started:
        get_logger().info("orders.recovered_intakes", count=len(started), order_ids=started[:20])
    return started


PURGE_EVERY_ROUNDS = 120  # stored payloads of finished workflows: once an hour is plenty
ENSURE_EVERY_ROUNDS = 10  # the outbound events' processes: at start, then every five minutes


async def recovery_loop(db: Database, client: Client, settings: Settings, every_s: float = 30) -> None:
    log = get_logger()
    rounds = 0
    while True:
        try:
            await start_orphaned_orders(db, client, settings)
        except Exception as e:  # keep sweeping; the next round retries
            log.warning("orders.recovery_failed", error=type(e).__name__)
        try:
            await purge_idempotent_requests(db, settings.idempotency_hours)
        except Exception as e:
            log.warning("api.idempotency_purge_failed", error=type(e).__name__)
        if rounds % ENSURE_EVERY_ROUNDS == 0:
            try:
                await ensure_event_processes(db, client, settings)
            except Exception as e:
                log.warning("events.ensure_failed", error=type(e).__name__)
        if rounds % PURGE_EVERY_ROUNDS == 0:
            try:
                await purge_payloads(db.engine, client)
            except Exception as e:
                log.warning("api.payload_purge_failed", error=type(e).__name__)
        rounds += 1
        await asyncio.sleep(every_s)
