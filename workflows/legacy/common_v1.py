"""FROZEN helpers of the v1 order and fulfillment workflows (see order_v1): activity calls by name, errors,
search attributes, the read-model mirror behind its patch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional, Type, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError

T = TypeVar("T")

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
FULFILLMENT_NODES = SearchAttributeKey.for_keyword_list("FulfillmentNodes")
PROMISED_BY = SearchAttributeKey.for_datetime("PromisedBy")
AT_RISK = SearchAttributeKey.for_bool("AtRisk")  # a fulfillment missed its ship-by or promised delivery
SEARCH_ATTRIBUTES = [ORDER_STATUS, CHANNEL, CUSTOMER_ID, FULFILLMENT_NODES, PROMISED_BY, AT_RISK]

# Errors an Update raises to say "not now" (the API answers 409) or "not like this" (422).
CONFLICT = "Conflict"
INVALID = "Invalid"

# Our own database and simulated systems: retry transient failures without limit, back off to 30 s.
IO_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=30),
                       non_retryable_error_types=["InvalidOrder"])


def conflict(message: str) -> ApplicationError:
    return ApplicationError(message, type=CONFLICT, non_retryable=True)


def invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID, non_retryable=True)


async def call(name: str, arg: Any, result_type: Optional[Type[T]] = None, timeout_s: float = 30) -> T:
    """Run an activity by name, so workflows never import the activity code (and its database stack)."""
    return await workflow.execute_activity(
        name, arg, result_type=result_type,
        start_to_close_timeout=timedelta(seconds=timeout_s), retry_policy=IO_RETRY,
    )


# Patch "local-read-model": the read model is mirrored by a local activity, run in the worker within the
# workflow task instead of a round trip through the server (it was over half of an order's activities).
# Orders started before this code keep the remote activity for their whole life.
LOCAL_READ_MODEL = "local-read-model"


async def mirror(name: str, snapshot: Any) -> None:
    """Write a snapshot to the read model (idempotent by version, so a re-run is harmless)."""
    if workflow.patched(LOCAL_READ_MODEL):
        await workflow.execute_local_activity(name, snapshot, start_to_close_timeout=timedelta(seconds=30),
                                              retry_policy=IO_RETRY)
    else:
        await call(name, snapshot, None)
