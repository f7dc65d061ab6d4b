"""The FastAPI application (OpenAPI at /docs)."""

from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from temporalio.client import Client

from api.auth import KeyCache, ensure_admin_key
from api import answers, console
from api.guard import RateLimiter, RequestGuard
from api.event_docs import add_event_docs, tidy as tidy_event_docs
from api.links import add_links
from api.index import start_index, stop_index
from api.placement import recovery_loop
from api.routes import codec, fulfillments, holds, imports, inventory, keys, network, ops, orders, promise, routing, tracking, webhooks
from models.messages import PickIn, RejectIn, ShipIn
from nodal import __version__
from nodal.codec import codec_from
from nodal.db import Database, resolve_database_url
from nodal.logging import configure_logging
from nodal.settings import Settings, get_settings
from nodal.telemetry import instrument_app, start_tracing
from nodal.client import connect


async def _invalid_value(request: Request, exc: DataError) -> JSONResponse:
    """A value the database refuses (a NUL character, text longer than its column, a number out of range)
    is the client's input: 422 with PostgreSQL's reason. Its transaction is rolled back, so nothing changed."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
    return JSONResponse(status_code=422, content={"detail": f"invalid value: {reason}"})


def create_app(settings: Optional[Settings] = None, db: Optional[Database] = None,
               temporal: Optional[Client] = None) -> FastAPI:
    settings = settings or get_settings()
    start_tracing("nodal-api")  # before the engines and the client: they are instrumented as they are made

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(settings.log_level, settings.log_json)
        own_db = db is None
        app.state.db = db or Database(resolve_database_url(settings))
        app.state.temporal = temporal or await connect(settings, lazy=True, db=app.state.db)
        if settings.admin_key:
            await ensure_admin_key(app.state.db, settings.admin_key)
        recovery = asyncio.create_task(recovery_loop(app.state.db, app.state.temporal, settings))
        await start_index(app.state)
        # What is alive now lives as long as the process (the app, the index, the libraries): kept out of the garbage
        # collector's full passes, which would otherwise walk it all and stall whatever requests are in flight.
        gc.collect()
        gc.freeze()
        yield
        recovery.cancel()
        await stop_index(app.state)
        if own_db:
            await app.state.db.dispose()

    # Offline: /docs and /redoc work with no network (their assets are served from the package).
    app = FastAPIOffline(title="Nodal", version=__version__, lifespan=lifespan,
                  description="Distributed order management: orders, fulfillment, inventory, returns.")
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, idempotency_hours=settings.idempotency_hours,
                       limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
                       per_address=RateLimiter(settings.rate_limit_per_address, settings.rate_limit_address_burst),
                       bad_key_cost=settings.rate_limit_bad_key_cost)
    app.add_middleware(console.ConsoleSession)  # the control tower's cookie, as the guard and the routes read keys
    app.add_middleware(ops.MetricsMiddleware)  # outermost but CORS, so refused requests are counted too
    app.add_middleware(codec.CodecCors, origins=[o.strip() for o in settings.codec_cors_origins.split(",") if o.strip()])
    app.state.codec = codec_from(settings)
    app.add_exception_handler(DataError, _invalid_value)
    # Quotes first: a request is matched against the routes in this order, and a quote is the busiest call there is
    # (matching it past the fifty routes before it cost 7% of a quote).
    for r in (promise.router, imports.router, orders.router, holds.router, fulfillments.router, network.router,
              inventory.router, routing.router, keys.router, codec.router, webhooks.router, tracking.carriers_router):
        app.include_router(r, responses=answers.COMMON)  # every keyed route may answer 401 and 429
    app.include_router(ops.router)  # public but /kpis, which says so itself
    app.include_router(tracking.public_router)  # a customer's own order: by email or signed link
    console.mount(app)  # the control tower's pages (not in the OpenAPI: they are HTML for staff)
    add_event_docs(app)
    instrument_app(app)
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(answers.add_common_errors(
                answers.add_schemas(tidy_event_docs(generate()), PickIn, ShipIn, RejectIn)))
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]
    return app
