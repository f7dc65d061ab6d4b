"""HoldSweepWorkflow: started by a Temporal schedule, it releases checkout holds past their expiry.

A schedule, not a cron on one machine: it runs once per interval whichever workers are up.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.activities as activities

HOLD_SWEEP_SCHEDULE = "nodal-hold-sweep"


@workflow.defn
class HoldSweepWorkflow:
    @workflow.run
    async def run(self) -> list[str]:
        return await activities.expire_holds(workflow.now())
