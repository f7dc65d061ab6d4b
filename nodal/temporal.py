"""Temporal client and worker wiring."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from nodal.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=pydantic_data_converter)


def build_worker(client: Client, settings: Settings, db, task_queue: str | None = None) -> Worker:
    from activities import NodalActivities
    from activities.deps import Deps
    from workflows.fulfillment import FulfillmentWorkflow
    from workflows.order import OrderWorkflow

    acts = NodalActivities(Deps.build(db, settings))
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[OrderWorkflow, FulfillmentWorkflow],
        activities=acts.all(),
        max_concurrent_activities=50,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
