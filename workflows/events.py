"""The long-running processes behind outbound events: one per subscription (its deliveries) and one for the channel
stock feeds. Each is a loop of long-running, heartbeating activities (events/delivery.py, events/feeds.py): the
state is in PostgreSQL, so a worker that dies is replaced by another within the heartbeat timeout and nothing is
lost; the loop continues as new before its history grows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.messages import FeedJob, WebhookJob

ROUNDS = 50  # activity runs per workflow run, then continue as new
# An activity that failed (a database restart) is tried again soon, for ever: the deliveries wait in the database.
PUMP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
FEEDS_WORKFLOW_ID = "nodal-channel-feeds"


def events_queue(task_queue: str) -> str:
    """The task queue of these processes, beside the orders' own."""
    return f"{task_queue}-events"


def webhook_workflow_id(name: str, generation: str) -> str:
    return f"webhook:{name}:{generation}"


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, job: WebhookJob) -> str:
        for _ in range(ROUNDS):
            gone = await workflow.execute_activity(
                "webhooks.deliver", job, result_type=bool, start_to_close_timeout=job.run_for + timedelta(minutes=1),
                heartbeat_timeout=job.heartbeat, retry_policy=PUMP_RETRY, summary=f"deliver events to {job.name}")
            if gone:
                return "deleted"
        workflow.continue_as_new(job)


@workflow.defn(name="ChannelFeeds")
class ChannelFeedsWorkflow:
    @workflow.run
    async def run(self, job: FeedJob) -> None:
        for _ in range(ROUNDS):
            await workflow.execute_activity(
                "feeds.watch", job, start_to_close_timeout=job.run_for + timedelta(minutes=1),
                heartbeat_timeout=job.heartbeat, retry_policy=PUMP_RETRY,
                summary="publish channels' availability changes")
        workflow.continue_as_new(job)
