"""OpenTelemetry traces: off unless the standard OTEL_ variables ask for them.

On (``OTEL_TRACES_EXPORTER=otlp|console``, or an ``OTEL_EXPORTER_OTLP_ENDPOINT``), one trace follows an order from
the API request (FastAPI's instrumentation) through the Temporal client, the workflows and their activities (the
SDK's TracingInterceptor: it carries the context in Temporal's headers, and its workflow spans show at once, which
suits orders that live for weeks) down to every SQL statement (SQLAlchemy's instrumentation). The exporter and the
resource come from the environment as the OpenTelemetry SDK reads it (OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_RESOURCE_ATTRIBUTES, ...).
"""

from __future__ import annotations

import os
from typing import Any, Optional

_provider: Any = None


def wanted() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(exporter or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def start_tracing(service: str, exporter: Any = None, batch: bool = True) -> Any:
    """The process's tracer provider (once per process); None when tracing is off and no exporter is given."""
    global _provider
    if _provider is not None:
        return _provider
    if exporter is None and not wanted():
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    if exporter is None:
        if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def stop_tracing() -> None:
    """Flush and stop (the tests' in-memory traces; a process otherwise keeps its provider to the end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def tracing() -> bool:
    return _provider is not None


def client_interceptors() -> list:
    """The Temporal client's (and so its workers') tracing interceptor, when tracing is on."""
    if not tracing():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_engine(engine: Any) -> None:
    """The process's database engine (the instrumentor instruments once per process: the first engine made while
    tracing is on, which is the Database every process makes at its start)."""
    if tracing():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # Its declared range stops before SQLAlchemy 2.1, whose engine events it uses are unchanged (the tracing test
        # checks the statements are in the trace).
        SQLAlchemyInstrumentor().instrument(engine=getattr(engine, "sync_engine", engine), tracer_provider=_provider,
                                            enable_commenter=False, skip_dep_check=True)


def instrument_app(app: Any) -> None:
    if tracing():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="livez,healthz,metrics")


def service_name(default: str) -> Optional[str]:
    return os.environ.get("OTEL_SERVICE_NAME") or default
