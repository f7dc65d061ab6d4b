"""Database engines: the configured Postgres, or the embedded one (pgserver) under NODAL_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from nodal.settings import Settings
from nodal.telemetry import instrument_engine


def embedded_postgres(datadir: Path, keep_running: bool = True):
    """Start (or attach to) the embedded PostgreSQL; `cleanup()` on what it returns stops it unless kept running."""
    import pgserver

    datadir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(datadir.resolve(), cleanup_mode=None if keep_running else "stop")


def start_embedded_postgres(datadir: Path, keep_running: bool = True) -> str:
    """Start (or attach to) the embedded PostgreSQL and return its URI."""
    return embedded_postgres(datadir, keep_running).get_uri()


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return sqlalchemy_url(start_embedded_postgres(settings.embedded_pg_dir))


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = True) -> AsyncEngine:
    # hide_parameters: a failed statement's error (logged, and kept in workflow histories as an activity
    # failure) would otherwise carry its bound values, customers' emails and addresses among them.
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=max_overflow,
                               pool_pre_ping=pre_ping, hide_parameters=True)


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = True):
        self.url = sqlalchemy_url(url)
        self.engine = make_engine(self.url, pool_size, max_overflow, pre_ping)
        instrument_engine(self.engine)  # its statements in the traces, when tracing is on
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s:
            yield s

    async def dispose(self) -> None:
        await self.engine.dispose()


class LazyConnection:
    """A connection checked out of the pool only when a statement runs: a request served from memory (the
    availability index and the network memo) costs no round trip, not even the pool's pre-ping."""

    def __init__(self, engine):
        self.engine = engine
        self._conn = None

    async def execute(self, *args, **kwargs):
        if self._conn is None:
            self._conn = await self.engine.connect()
        return await self._conn.execute(*args, **kwargs)

    async def __aenter__(self) -> "LazyConnection":
        return self

    async def __aexit__(self, *exc) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
