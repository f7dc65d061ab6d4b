"""The store flows: a pickup at the counter or the curb, and the transfer that brings its stock to the store;
and which workflow runs a fulfillment of each kind."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.status import FulfillmentKind
    from workflows.fulfillment import FulfillmentWorkflow
    from workflows.store.pickup import PickupWorkflow
    from workflows.store.transfer import TransferWorkflow

WORKFLOW_OF = {FulfillmentKind.delivery: FulfillmentWorkflow, FulfillmentKind.pickup: PickupWorkflow,
               FulfillmentKind.transfer: TransferWorkflow}
