"""Starting the outbound events' long-running workflows (workflows/events.py): a subscription's deliveries when it
is created, the channel feeds when a channel first has one; and, from the recovery loop, any that should run and
does not (a crash between the row and the start). The feeds' process also drops events past their retention, so
the recovery loop keeps it running whether or not a channel has a feed (idle, it costs a poll every few seconds)."""

from __future__ import annotations

from sqlalchemy import text
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from models.messages import FeedJob, WebhookJob
from nodal.settings import Settings
from workflows.events import (
    FEEDS_WORKFLOW_ID, ChannelFeedsWorkflow, WebhookDeliveryWorkflow, events_queue, webhook_workflow_id,
)


async def start_webhook(client: Client, settings: Settings, name: str, generation: str) -> None:
    await client.start_workflow(
        WebhookDeliveryWorkflow.run, WebhookJob(name=name, generation=generation, heartbeat=settings.event_heartbeat),
        id=webhook_workflow_id(name, generation), task_queue=events_queue(settings.task_queue),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, static_summary=f"deliveries of webhook {name}")


async def start_feeds(client: Client, settings: Settings) -> None:
    await client.start_workflow(
        ChannelFeedsWorkflow.run, FeedJob(heartbeat=settings.event_heartbeat), id=FEEDS_WORKFLOW_ID,
        task_queue=events_queue(settings.task_queue), id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="channels' stock feeds")


async def ensure_event_processes(db, client: Client, settings: Settings) -> int:
    """Start what should run: every subscription's deliveries, and the feeds (with the events' retention)."""
    async with db.engine.connect() as conn:
        hooks = (await conn.execute(text("SELECT name, generation FROM webhooks"))).all()
    for h in hooks:
        await start_webhook(client, settings, h.name, h.generation)
    await start_feeds(client, settings)
    return len(hooks) + 1
