"""What every request passes before a route sees it: a body size limit (413), a rate limit per API key (429
with Retry-After) and Idempotency-Key replays for POST (the claim and the record: api/idempotency.py).

Plain ASGI, outermost but for metrics: a refused request never reaches a route, so it changes nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

from api import idempotency
from api.auth import bearer_key_hash
from nodal.logging import get_logger

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class _Bucket:
    tokens: float
    at: float

    def refill(self, now: float, per_second: float, burst: int) -> float:
        """Tokens as of ``now`` (at most a burst), and the bucket brought up to then."""
        self.tokens, self.at = min(burst, self.tokens + (now - self.at) * per_second), now
        return self.tokens


class RateLimiter:
    """A token bucket per key (an API key's hash, a client address) in this process: ``per_second`` sustained,
    ``burst`` at once (0: no limit). With several API processes each keeps its own, so a key's ceiling is theirs
    added up. The table is bounded and never resets a spent bucket: buckets are kept by recent use, a full one
    (as good as new) makes room, and while none is full the newcomers share one bucket."""

    OVERFLOW = "\0overflow"

    def __init__(self, per_second: float, burst: int, max_buckets: int = 100_000):
        self.per_second, self.burst, self.max_buckets = per_second, max(burst, 1), max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is not None:
            self._buckets.move_to_end(key)
            return b
        if len(self._buckets) >= self.max_buckets:
            if next(iter(self._buckets.values())).refill(now, self.per_second, self.burst) >= self.burst:
                self._buckets.popitem(last=False)
            else:
                key = self.OVERFLOW
                if (b := self._buckets.get(key)) is not None:
                    return b
        b = self._buckets[key] = _Bucket(float(self.burst), now)
        return b

    def wait(self, key: str, cost: float = 1.0) -> float:
        """0 if the request may go now (and it is counted), else the seconds until it may."""
        if self.per_second <= 0:
            return 0.0
        now = time.monotonic()
        b = self._bucket(key, now)
        if b.refill(now, self.per_second, self.burst) >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.per_second

    def charge(self, key: str, cost: float) -> None:
        """Take ``cost`` more tokens (down to a debt of one burst): a failed key costs its address more."""
        if self.per_second <= 0:
            return
        now = time.monotonic()
        b = self._bucket(key, now)
        b.tokens = max(b.refill(now, self.per_second, self.burst) - cost, -self.burst)


async def _respond(send, status: int, detail: str, headers: Optional[dict[str, str]] = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> Optional[str]:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


class RequestGuard:
    def __init__(self, app, max_body_bytes: int, limiter: RateLimiter, idempotency_hours: float,
                 per_address: Optional[RateLimiter] = None, bad_key_cost: float = 0):
        self.app, self.max_body_bytes, self.limiter = app, max_body_bytes, limiter
        self.per_address, self.bad_key_cost = per_address or RateLimiter(0, 1), bad_key_cost
        self.keep = f"{float(idempotency_hours)} hours"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Before anything is looked up: what one client address may ask, with a key or without (behind a proxy,
        # run uvicorn with --proxy-headers so this is the client's address, not the proxy's).
        address = (scope.get("client") or ("-",))[0]
        if wait := self.per_address.wait(address):
            return await _respond(send, 429, f"rate limit of {self.per_address.per_second:g} requests/s per client"
                                  f" address reached; retry in {wait:.2f} s", {"Retry-After": str(math.ceil(wait))})
        key_hash = bearer_key_hash(_header(scope, b"authorization"))
        if key_hash is not None:
            scope.setdefault("state", {})["key_hash"] = key_hash
        if key_hash is not None and (wait := self.limiter.wait(key_hash)):
            return await _respond(send, 429, f"rate limit of {self.limiter.per_second:g} requests/s per API key"
                                  f" reached; retry in {wait:.2f} s", {"Retry-After": str(math.ceil(wait))})
        if self.bad_key_cost and self.per_address.per_second > 0:
            send = self._charging_bad_keys(send, address)
        if scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _respond(send, 413, self._too_large())
        # Read the body whole (routes parse JSON anyway), refusing it as soon as it passes the limit.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _respond(send, 413, self._too_large())
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # after the body: the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        idem = _header(scope, b"idempotency-key")
        if idem is None or scope["method"] != "POST" or key_hash is None:
            return await self.app(scope, replay, send)
        if not 1 <= len(idem) <= 255 or not idem.isprintable():
            return await _respond(send, 400, "Idempotency-Key must be 1 to 255 printable characters")
        await self._idempotent(scope, replay, send, key_hash, idem, body)

    def _charging_bad_keys(self, send, address: str):
        """A request that fails authentication costs its address more: guessing keys stays slow."""
        async def watch(message):
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.per_address.charge(address, self.bad_key_cost - 1)
            await send(message)
        return watch

    def _too_large(self) -> str:
        return f"request body over the limit of {self.max_body_bytes} bytes (NODAL_MAX_BODY_BYTES)"

    async def _idempotent(self, scope, receive, send, key_hash: str, idem: str, body: bytes) -> None:
        db = scope["app"].state.db
        fingerprint = idempotency.fingerprint(scope["method"], scope["path"], scope.get("query_string", b""), body)
        got = await idempotency.claim(db, key_hash, idem, fingerprint, self.keep)
        if isinstance(got, idempotency.Kept):
            if got.fingerprint != fingerprint:
                return await _respond(send, 422, "this Idempotency-Key was used for a different request"
                                      " (method, path or body); use a new key for a new request")
            if got.status is None:
                return await _respond(send, 409, "a request with this Idempotency-Key is still running;"
                                      " retry shortly", {"Retry-After": "1"})
            get_logger(path=scope["path"]).info("api.idempotent_replay", status=got.status)
            await send({"type": "http.response.start", "status": got.status, "headers": idempotency.replay_headers(got)})
            return await send({"type": "http.response.body", "body": got.body or b""})

        scope.setdefault("state", {})["idempotency"] = got
        response: dict[str, Any] = {"status": 500, "content_type": None, "body": []}

        async def keep(message):
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["content_type"] = next((v.decode("latin-1") for k, v in message.get("headers", [])
                                                 if k.lower() == b"content-type"), None)
            elif message["type"] == "http.response.body":
                response["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, keep)
        finally:
            await idempotency.finish(db, got, response["status"], response["content_type"], b"".join(response["body"]))
