"""The worker: every workflow and activity on the task queue, and the schedules the workers keep."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Sequence

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from nodal.settings import Settings


class Workers:
    """The order worker and, on a task queue of its own, the outbound events' long-running processes (one activity
    slot each for as long as they run: they never take the order path's slots)."""

    def __init__(self, *workers: Worker):
        self.workers = workers

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))


def build_worker(client: Client, settings: Settings, db, task_queue: str | None = None,
                 interceptors: Sequence[Interceptor] = ()) -> Workers:
    from activities import NodalActivities
    from activities.deps import Deps
    from workflows.bid_prices import BidPriceWorkflow
    from workflows.fulfillment import FulfillmentWorkflow
    from workflows.store.pickup import PickupWorkflow
    from workflows.store.transfer import TransferWorkflow
    from workflows.holds import HoldSweepWorkflow
    from workflows.legacy.fulfillment_v1 import FulfillmentWorkflowV1
    from workflows.legacy.order_v1 import OrderWorkflowV1
    from workflows.events import ChannelFeedsWorkflow, WebhookDeliveryWorkflow, events_queue
    from workflows.order import OrderWorkflow

    acts = NodalActivities(Deps.build(db, settings, client))
    queue = task_queue or settings.task_queue
    orders = Worker(
        client,
        task_queue=queue,
        # The v1 types stay registered, frozen, for the orders that started on them (workflows/legacy).
        workflows=[OrderWorkflow, FulfillmentWorkflow, PickupWorkflow, TransferWorkflow, HoldSweepWorkflow, BidPriceWorkflow, OrderWorkflowV1,
                   FulfillmentWorkflowV1],
        activities=acts.all(),
        max_concurrent_activities=50,
        max_concurrent_workflow_tasks=settings.workflow_task_slots,
        # A worker that died leaves its orders' next tasks on its own (sticky) queue until this passes; then any
        # worker takes them (replaying the history). A live worker takes its sticky tasks in milliseconds.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=interceptors,
    )
    # Its activities never finish on their own: on shutdown they are cancelled at once (their state is in
    # PostgreSQL; another worker takes over).
    events = Worker(client, task_queue=events_queue(queue), workflows=[WebhookDeliveryWorkflow, ChannelFeedsWorkflow],
                    activities=acts.event_processes(), max_concurrent_activities=1000,
                    graceful_shutdown_timeout=timedelta(0))
    return Workers(orders, events)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the hold-sweep and bid-price schedules once per namespace (every worker may try; the first wins)."""
    from temporalio.client import (
        Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleIntervalSpec,
        ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec,
    )

    from workflows.bid_prices import BID_PRICE_SCHEDULE, BidPriceWorkflow
    from workflows.holds import HOLD_SWEEP_SCHEDULE, HoldSweepWorkflow

    for schedule_id, run, every in ((HOLD_SWEEP_SCHEDULE, HoldSweepWorkflow.run, settings.hold_sweep_every),
                                    (BID_PRICE_SCHEDULE, BidPriceWorkflow.run, settings.bid_price_every)):
        try:
            await client.create_schedule(schedule_id, Schedule(
                action=ScheduleActionStartWorkflow(run, id=f"{schedule_id}-run", task_queue=settings.task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ))
        except ScheduleAlreadyRunningError:
            pass
