"""Waking on PostgreSQL notifications (LISTEN), with a reconnect when the database goes away."""

from __future__ import annotations

import asyncio
from typing import Optional

from nodal.logging import get_logger


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def listen(database_url: str, channel: str, woken: asyncio.Event, payload: Optional[str] = None,
                 others: Optional[dict[str, asyncio.Event]] = None) -> None:
    """Set ``woken`` on each notification on ``channel`` (with this payload, if given; ``others`` maps other payloads
    to their own events), and on every (re)connection: whatever was written while nobody listened is looked at.
    Runs until cancelled; the callers poll besides."""
    import psycopg

    others = others or {}
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True) as conn:
                await conn.execute(f"LISTEN {channel}")
                woken.set()
                for e in others.values():
                    e.set()
                async for n in conn.notifies():
                    if n.payload in others:
                        others[n.payload].set()
                    elif payload is None or n.payload == payload:
                        woken.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            get_logger().info("events.listen_lost", channel=channel, error=type(e).__name__)
            await asyncio.sleep(1.0)
