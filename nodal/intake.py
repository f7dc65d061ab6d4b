"""An order's intake and its workflow's start options: the same for the API placing an order and for an order
placing another (an exchange's replacement, started by an activity)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from models.messages import OrderInput, cents
from models.search import CHANNEL, CUSTOMER_ID, ORDER_STATUS

ORDER_WORKFLOW = "Order"


async def record_intake(conn, inp: OrderInput) -> bool:
    """Write the order as placed; False if this channel + external id is already known."""
    total = cents(sum((l.unit_price * l.qty for l in inp.lines), Decimal(0)))
    row = (await conn.execute(
        text(
            "INSERT INTO orders (order_id, external_id, channel, customer_id, customer_tier, customer_email,"
            " status, currency, total, policy, intake, version, created_at, updated_at, credit_terms)"
            " VALUES (:o, :e, :c, :cu, :t, :em, 'received', :cur, :tot, CAST(:p AS jsonb),"
            " CAST(:i AS jsonb), 0, now(), now(), :terms) ON CONFLICT DO NOTHING RETURNING order_id"
        ),
        dict(o=inp.order_id, e=inp.external_id, c=inp.channel, cu=inp.customer.id, t=inp.customer.tier,
             em=inp.customer.email, cur=inp.currency, tot=total, p=inp.policy.model_dump_json(),
             i=inp.model_dump_json(), terms=inp.customer.account.terms if inp.customer.account else None),
    )).first()
    return row is not None


def start_options(inp: OrderInput, task_queue: str) -> dict[str, Any]:
    # Starting twice attaches to the running workflow: placement is idempotent end to end. The second
    # argument is the book a long-lived order carries when it continues as new (none at placement).
    return dict(
        args=[inp, None], id=inp.order_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # What the Temporal UI's list and page say of the order before anything else.
        static_summary=f"Order {inp.external_id} · {inp.channel} · {len(inp.lines)} line(s)",
        static_details=f"customer {inp.customer.id}" + (f" (tier {inp.customer.tier})" if inp.customer.tier else ""),
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(ORDER_STATUS, "received"), SearchAttributePair(CHANNEL, inp.channel),
            SearchAttributePair(CUSTOMER_ID, inp.customer.id)]),
    )
