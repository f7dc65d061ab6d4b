"""Typed stubs of the activities the workflows call: ``await activities.plan(request)``.

Workflows never import the activity code (it brings the database stack into the sandbox); they call
activities by name through these stubs, which fix each one's argument and result types and how it runs.

Local activities run in the worker inside the workflow task, with no round trip through the server: the
short database and gateway calls of the order's hot path (capture → plan → reserve → authorize, the
read-model mirror, notifications). They are as idempotent as the rest, so a worker that dies mid-task
loses nothing: the task times out, another worker replays it and runs them again. External calls that
may take long (carrier labels) stay ordinary activities.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Optional, Type, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        BidPriceRefresh, ConsumeRequest, CreditCheck, CreditVerdict, MergeReservations, FulfillmentSnapshot, Label, Notification, OrderInput, OrderSnapshot,
        PaymentRecord, PaymentRequest, Plan, PlanRequest, ReceiveTransfer, ReleaseClaims, ReservationTarget, ReserveRequest,
        ReserveResult, RestockRequest, ReturnLabelRequest, ReturnRouteAnswer, ReturnRouteRequest, ShipmentRequest,
    )
    from workflows.common import IO_RETRY

T = TypeVar("T")
TIMEOUT = timedelta(seconds=30)
# Work on more lines than this runs as an ordinary activity: a local one runs inside the workflow task, and a
# 20,000-line reservation would hold that task open for seconds.
LOCAL_LINES = 100


async def _local(name: str, arg: Any, result_type: Optional[Type[T]], summary: Optional[str] = None,
                 timeout: timedelta = TIMEOUT) -> T:
    return await workflow.execute_local_activity(name, arg, result_type=result_type, start_to_close_timeout=timeout,
                                                 retry_policy=IO_RETRY, summary=summary)


async def _remote(name: str, arg: Any, result_type: Optional[Type[T]], summary: Optional[str] = None,
                  timeout: timedelta = TIMEOUT) -> T:
    return await workflow.execute_activity(name, arg, result_type=result_type, start_to_close_timeout=timeout,
                                           retry_policy=IO_RETRY, summary=summary)


async def _by_size(lines: int, name: str, arg: Any, result_type: Optional[Type[T]], summary: str,
                   timeout: timedelta = TIMEOUT) -> T:
    """Local for the everyday order, ordinary past LOCAL_LINES (deterministic: the same size runs the same way)."""
    run = _local if lines <= LOCAL_LINES else _remote
    return await run(name, arg, result_type, summary, timeout)


# ---------------------------------------------------------------- order intake and sourcing
async def capture(order: OrderInput) -> None:
    """Check the order against the catalog and network as they are now (InvalidOrder if it cannot be)."""
    await _by_size(len(order.lines), "order.capture", order, None, "check the order against the catalog")


async def start_replacement(order: OrderInput) -> None:
    """An exchange's replacement order, started as an order of its own (not a child: it outlives the original)."""
    await _remote("order.start_replacement", order, None, f"start replacement order {order.order_id}")


async def plan(req: PlanRequest) -> Plan:
    # A plan of thousands of lines takes seconds of routing: the timeout leaves it room.
    return await _by_size(len(req.lines), "routing.plan", req, Plan, f"plan {len(req.lines)} line(s)",
                          timeout=timedelta(minutes=5))


async def reserve(req: ReserveRequest) -> ReserveResult:
    lines = sum(len(f.lines) for f in req.fulfillments) + len(req.supply_claims)
    units = sum(l.qty for f in req.fulfillments for l in f.lines)
    return await _by_size(lines, "inventory.reserve", req, ReserveResult,
                          f"reserve {units} unit(s) at {', '.join(sorted({f.node_id for f in req.fulfillments})) or '-'}",
                          timeout=timedelta(minutes=5))


async def merge_reservations(req: MergeReservations) -> int:
    return await _local("inventory.merge", req, int, f"consolidate {len(req.merged)} shipment(s) into {req.into}")


async def set_reservations(targets: list[ReservationTarget], why: str) -> int:
    """Bring reservations down to their targets (0 releases them); idempotent by target. Answers with the units
    they still hold."""
    return await _by_size(len(targets), "inventory.release", targets, int, f"{why}: {len(targets)} reservation(s)",
                          timeout=timedelta(minutes=5))


async def release_claims(req: ReleaseClaims) -> int:
    return await _local("inventory.release_claims", req, int, "give back claims on incoming supply")


async def commit(req: ConsumeRequest) -> int:
    return await _by_size(len(req.lines), "inventory.commit", req, int, f"hand the reservation to {req.node_id}")


async def consume(req: ConsumeRequest) -> int:
    return await _by_size(len(req.lines), "inventory.consume", req, int,
                          f"ship {sum(l.qty for l in req.lines)} unit(s) off the books")


async def receive_transfer(req: ReceiveTransfer) -> int:
    return await _by_size(len(req.lines), "inventory.receive_transfer", req, int,
                          f"receive transfer {req.transfer_id} at {req.node_id}")


async def restock(req: RestockRequest) -> int:
    return await _by_size(len(req.lines), "inventory.restock", req, int,
                          f"receive return {req.return_id} at {req.node_id}")


async def return_destination(req: ReturnRouteRequest) -> ReturnRouteAnswer:
    return await _local("routing.return_destination", req, ReturnRouteAnswer, f"route the return from {req.origin_node_id}")


async def expire_holds(at: datetime) -> list[str]:
    return await _remote("inventory.expire_holds", at, list, "release expired checkout holds")


async def refresh_bid_prices(at: datetime) -> BidPriceRefresh:
    # A large forecast LP may take a while; it is bounded by the solver's own time limit.
    return await _remote("routing.refresh_bid_prices", at, BidPriceRefresh, "re-price scarce stock",
                         timeout=timedelta(minutes=5))


# ---------------------------------------------------------------- money, carriers, notifications
async def payment(req: PaymentRequest) -> PaymentRecord:
    return await _local("payments.call", req, PaymentRecord, f"{req.kind} {req.amount} {req.currency}")


async def credit_check(req: CreditCheck) -> CreditVerdict:
    return await _local("payments.credit_check", req, CreditVerdict, f"credit check {req.amount}")


async def label(req: ShipmentRequest) -> Label:
    return await _remote("carriers.label", req, Label, f"label for {req.units} unit(s)")


async def return_label(req: ReturnLabelRequest) -> Label:
    return await _remote("carriers.return_label", req, Label, f"return label for {req.return_id}")


async def pickup_hold(node_id: str) -> Optional[timedelta]:
    """How long this store holds a ready pickup, if its calendar says (else the order's default)."""
    return await _local("network.pickup_hold", node_id, timedelta, f"pickup hold at {node_id}")


async def notify(n: Notification) -> None:
    await _local("notify.send", n, None, f"tell the customer: {n.event}")


# ---------------------------------------------------------------- read model
async def mirror_order(m: OrderSnapshot) -> Optional[bool]:
    """True: the read model held what a discarded attempt of a workflow task wrote (the order then writes a
    complete snapshot). Histories recorded before it answered hold None."""
    lines = len(m.state.lines) + (len(m.line_updates.line_id) if m.line_updates else 0)
    return await _by_size(lines, "read_model.record_order", m, Optional[bool], f"read model v{m.state.version}",
                          timeout=timedelta(minutes=2))


async def mirror_fulfillment(s: FulfillmentSnapshot) -> None:
    await _by_size(len(s.fulfillment.lines), "read_model.record_fulfillment", s, None, f"read model v{s.version}")
