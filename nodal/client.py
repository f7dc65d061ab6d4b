"""The Temporal client every process uses: the API, the workers, the launcher and the tools."""

from __future__ import annotations

from temporalio.client import Client

from nodal.codec import data_converter
from nodal.settings import Settings
from nodal.telemetry import client_interceptors


async def connect(settings: Settings, lazy: bool = False, db=None) -> Client:
    """A client; ``lazy`` defers the connection to the first call (the API serves reads without Temporal). With
    the database, large payloads are kept there rather than in histories (nodal/payloads.py): every client and
    worker that starts, signals or runs orders passes it."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=data_converter(settings, db.engine if db is not None else None),
                                lazy=lazy, interceptors=client_interceptors())
