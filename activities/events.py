"""webhooks.deliver and feeds.watch: the long-running activities of the outbound events' processes."""

from __future__ import annotations

from temporalio import activity

from activities.deps import Deps
from events.delivery import Dispatcher, Policy
from events.feeds import FeedWatcher
from models.messages import FeedJob, WebhookJob


class EventActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="webhooks.deliver")
    async def deliver(self, job: WebhookJob) -> bool:
        """Deliver the subscription's events for a while; True once the subscription is deleted."""
        s = self.deps.settings
        policy = Policy(timeout=s.webhook_timeout.total_seconds(), backoff=s.webhook_backoff.total_seconds(),
                        backoff_cap=s.webhook_backoff_cap.total_seconds(), retry_for=s.webhook_retry_for,
                        concurrency=max(s.webhook_concurrency, 1), keep=s.event_retention)
        return await Dispatcher(self.deps.db.url, job.name, job.generation, policy,
                                heartbeat=activity.heartbeat).run(job.run_for.total_seconds())

    @activity.defn(name="feeds.watch")
    async def watch(self, job: FeedJob) -> None:
        s = self.deps.settings
        await FeedWatcher(self.deps.db.engine, self.deps.db.url, debounce=s.feed_debounce.total_seconds(),
                          retention=s.event_retention, heartbeat=activity.heartbeat).run(job.run_for.total_seconds())
