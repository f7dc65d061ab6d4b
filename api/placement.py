"""Starting order workflows: at placement, and again for intakes a crash left without a workflow."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from models.messages import OrderInput, Windows
from api.idempotency import purge as purge_idempotent_requests
from nodal.db import Database
from nodal.logging import get_logger
from nodal.payloads import purge as purge_payloads
from nodal.settings import Settings
from workflows.common import CHANNEL, CUSTOMER_ID, ORDER_STATUS
from workflows.order import OrderWorkflow


async def record_intake(conn, inp: OrderInput) -> bool:
    """Write the order as placed; False if this channel + external id is already known."""
    total = sum((l.unit_price * l.qty for l in inp.lines), 0)
    row = (await conn.execute(
        text(
            "INSERT INTO orders (order_id, external_id, channel, customer_id, customer_tier, customer_email,"
            " status, currency, total, policy, intake, version, created_at, updated_at)"
            " VALUES (:o, :e, :c, :cu, :t, :em, 'received', :cur, :tot, CAST(:p AS jsonb),"
            " CAST(:i AS jsonb), 0, now(), now()) ON CONFLICT DO NOTHING RETURNING order_id"
        ),
        dict(o=inp.order_id, e=inp.external_id, c=inp.channel, cu=inp.customer.id, t=inp.customer.tier,
             em=inp.customer.email, cur=inp.currency, tot=total, p=inp.policy.model_dump_json(),
             i=inp.model_dump_json()),
    )).first()
    return row is not None


def windows(settings: Settings) -> Windows:
    """The order's clocks and limits, fixed when it is placed."""
    s = settings
    return Windows(remorse=s.remorse_window, accept_timeout=s.accept_timeout, return_window=s.return_window,
                   max_reroutes=s.max_reroutes, max_fulfillment_lines=s.max_fulfillment_lines,
                   authorization_validity=s.authorization_validity, payment_hold=s.payment_hold,
                   history_limit=s.order_history_limit)


def start_options(inp: OrderInput, settings: Settings) -> dict[str, Any]:
    # Starting twice attaches to the running workflow: placement is idempotent end to end. The second
    # argument is the book a long-lived order carries when it continues as new (none at placement).
    return dict(
        args=[inp, None], id=inp.order_id, task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # What the Temporal UI's list and page say of the order before anything else.
        static_summary=f"Order {inp.external_id} · {inp.channel} · {len(inp.lines)} line(s)",
        static_details=f"customer {inp.customer.id}" + (f" (tier {inp.customer.tier})" if inp.customer.tier else ""),
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(ORDER_STATUS, "received"), SearchAttributePair(CHANNEL, inp.channel),
            SearchAttributePair(CUSTOMER_ID, inp.customer.id)]),
    )


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
            await client.start_workflow(OrderWorkflow.run, **start_options(inp, settings))
            started.append(r.order_id)
        except WorkflowAlreadyStartedError:
            pass
        except Exception as e:
            get_logger(order_id=r.order_id).warning("orders.recovery_skipped", error=type(e).__name__)
    if started:
        get_logger().info("orders.recovered_intakes", count=len(started), order_ids=started[:20])
    return started


PURGE_EVERY_ROUNDS = 120  # stored payloads of finished workflows: once an hour is plenty


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
        if rounds % PURGE_EVERY_ROUNDS == 0:
            try:
                await purge_payloads(db.engine, client)
            except Exception as e:
                log.warning("api.payload_purge_failed", error=type(e).__name__)
        rounds += 1
        await asyncio.sleep(every_s)
