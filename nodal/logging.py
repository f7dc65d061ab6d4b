"""Structured JSON logs. Order and fulfillment ids are welcome; personal data is not."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# Keys that may carry personal data: their values never reach a log line.
PERSONAL_KEYS = frozenset(
    {"email", "address", "customer", "phone", "name", "street", "line1", "line2", "city",
     "first_name", "last_name", "lat", "lon", "postal_code", "destination"}
)


def _redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key in PERSONAL_KEYS:
            event[key] = "[redacted]"
    return event


_configured = False


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    for noisy in ("httpx", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(**bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger("nodal").bind(**bound)
