"""Structured logs: JSON lines for machines, or readable lines in a terminal. Order and fulfillment ids are
welcome; personal data is not."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import structlog

# Keys that may carry personal data: their values never reach a log line.
PERSONAL_KEYS = frozenset(
    {"email", "address", "customer", "phone", "name", "street", "line1", "line2", "city",
     "first_name", "last_name", "lat", "lon", "postal_code", "destination"}
)


# Free text can carry personal data too: an email anywhere, and PostgreSQL's DETAIL lines, which quote the
# failing row or the conflicting key's values whatever hide_parameters says.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_FAILING_ROW = re.compile(r"(Failing row contains \().*")
_KEY_VALUES = re.compile(r"(Key \([^)]*\)=\().*?(\)(?: already exists| is not present| conflicts)|\)$)", re.M)


def _scrub(value: Any) -> Any:
    """Personal data out of a value, at any depth: personal keys blanked, emails and row quotes cut from text."""
    if isinstance(value, str):
        value = _EMAIL.sub("[email]", value)
        value = _FAILING_ROW.sub(r"\1[redacted])", value)
        return _KEY_VALUES.sub(r"\1[redacted]\2", value)
    if isinstance(value, dict):
        return {k: "[redacted]" if k in PERSONAL_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        event[key] = "[redacted]" if key in PERSONAL_KEYS else _scrub(event[key])
    return event


_configured = False
_HANDLER_NAME = "nodal"


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test's capture, a redirected stream), not when
    logging was configured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: Optional[bool] = None, file: Optional[Path] = None) -> None:
    """``json`` None: JSON unless stderr is a terminal. ``file``: every line goes there as JSON instead of stderr
    (`nodal dev` keeps the terminal for its status board)."""
    global _configured
    if _configured:
        return
    _configured = True
    stream: Any = _Stderr()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        stream, json = _append(file), True
    elif json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,  # before the redaction: a traceback's text is scrubbed too
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # The standard library's loggers (Temporal SDK, uvicorn, SQLAlchemy) render through the same redaction.
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level, stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _redact, renderer]))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pgserver logs initdb's whole transcript at INFO.
    for noisy in ("httpx", "uvicorn.access", "alembic", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _append(path: Path) -> TextIO:
    return open(path, "a", buffering=1, encoding="utf-8")  # line-buffered: a crash loses no line


def get_logger(**bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger("nodal").bind(**bound)
