"""What the workflows share: errors an Update answers with, search attributes, retry policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Optional, TypeVar

from pydantic import BaseModel, ValidationError

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from models.search import (  # noqa: F401 (the workflows' own names for them)
    AT_RISK, CHANNEL, CUSTOMER_ID, FULFILLMENT_NODES, ORDER_STATUS, PROMISED_BY, SEARCH_ATTRIBUTES,
)

# Errors an Update raises to say "not now" (the API answers 409) or "not like this" (422).
CONFLICT = "Conflict"
INVALID = "Invalid"
# The id prefix of Updates the API sends under an Idempotency-Key (api/idempotency.py): the same request, retried,
# is the same Update; an order remembers those it applied across continue-as-new.
IDEMPOTENT_UPDATE = "idem-"
# What an activity raises when retrying cannot help (the input contradicts the database): never retried.
REFUSED = ("InvalidOrder", "InvalidReturn")

# Our own database and simulated systems: retry transient failures without limit, back off to 30 s.
IO_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=30), non_retryable_error_types=list(REFUSED))


def conflict(message: str) -> ApplicationError:
    return ApplicationError(message, type=CONFLICT, non_retryable=True)


def invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID, non_retryable=True)


def when(t: Optional[datetime]) -> str:
    """A time as the workflows' stories tell it to support staff."""
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "-"


M = TypeVar("M", bound=BaseModel)
# An Update's input as it arrives (JSON): support staff type it into the Temporal UI or CLI, so it is read by the
# validator, where a mistake is refused plainly, instead of failing to decode (a retryable "Failed decoding").
Input = Any


def parse(model: type[M], raw: Input, what: str) -> M:
    """``raw`` as ``model``, or Invalid (422, never retried) naming each field that is wrong."""
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        wrong = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in e.errors())
        raise invalid(f"invalid {what} input: {wrong}") from None


def check_within(allowed: dict[str, int], lines: Iterable[Any], of: str, did: str, had: str) -> None:
    """Each line once, each one of ``of``'s, none over what ``of`` allows (InvalidError: 422)."""
    seen = set()
    for l in lines:
        if l.line_id not in allowed:
            raise invalid(f"line {l.line_id} is not part of {of}")
        if l.line_id in seen:
            raise invalid(f"line {l.line_id} appears twice")
        seen.add(l.line_id)
        if l.qty > allowed[l.line_id]:
            raise invalid(f"line {l.line_id}: {did} {l.qty} but only {allowed[l.line_id]} were {had}")


def refusal(err: BaseException) -> Optional[str]:
    """Why an activity refused for good (a non-retryable ApplicationError, as a remote activity's cause or a
    local activity's own failure); None for any other error."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.message if isinstance(cause, ApplicationError) else None
