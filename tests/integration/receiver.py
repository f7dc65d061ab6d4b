"""A webhook receiver on 127.0.0.1 for the tests and benches: a real HTTP server (uvicorn) that keeps every request
and answers as the test says (a status, after a delay)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import uvicorn

from nodal.ports import free_port


@dataclass
class Received:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


# What to answer the n-th request carrying a webhook-id (n from 1): (status, seconds to wait first).
Behaviour = Callable[[str, int], tuple[int, float]]


def always_ok(_id: str, _n: int) -> tuple[int, float]:
    return 200, 0.0


@dataclass
class Receiver:
    behaviour: Behaviour = always_ok
    got: list[Received] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.got.append(Received(time.monotonic(), headers, body))
        wid = headers.get("webhook-id", "")
        self.seen[wid] = self.seen.get(wid, 0) + 1
        status, delay = self.behaviour(wid, self.seen[wid])
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})

    def unique(self) -> dict[str, Received]:
        """Deduplicated by webhook-id, as a receiver should: the first copy of each."""
        out: dict[str, Received] = {}
        for r in self.got:
            out.setdefault(r.id, r)
        return out


@asynccontextmanager
async def serving(behaviour: Behaviour = always_ok) -> AsyncIterator[Receiver]:
    r = Receiver(behaviour=behaviour, port=free_port())
    server = uvicorn.Server(uvicorn.Config(r.app, host="127.0.0.1", port=r.port, log_level="error", lifespan="off", interface="asgi3", timeout_graceful_shutdown=1,
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield r
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def until(check: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = check()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
