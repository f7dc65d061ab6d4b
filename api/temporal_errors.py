"""Turn Temporal Update outcomes into HTTP answers: Conflict → 409, Invalid → 422, closed → 409."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

from fastapi import HTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.common import CONFLICT, INVALID

T = TypeVar("T")


class WorkflowClosed(Exception):
    pass


def unreachable(err: BaseException) -> bool:
    """Temporal could not be reached at all (a lazily connected client reports it as a RuntimeError)."""
    return isinstance(err, RPCError) and err.status == RPCStatusCode.UNAVAILABLE or (
        isinstance(err, RuntimeError) and "connect" in str(err).lower())


def _app_error(err: BaseException | None) -> ApplicationError | None:
    while err is not None:
        if isinstance(err, ApplicationError):
            return err
        err = err.__cause__
    return None


async def run_update(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except WorkflowUpdateFailedError as e:
        app = _app_error(e.cause)
        if app is not None and app.type == INVALID:
            raise HTTPException(422, app.message)
        if app is not None and app.type == CONFLICT:
            raise HTTPException(409, app.message)
        raise HTTPException(409, str(app.message if app else e))
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND or "completed" in str(e).lower():
            raise WorkflowClosed(str(e))
        raise HTTPException(503, f"workflow service unavailable: {e.message}")
    except RuntimeError as e:
        if unreachable(e):
            raise HTTPException(503, "workflow service unreachable; try again shortly")
        raise
