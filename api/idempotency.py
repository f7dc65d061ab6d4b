"""Idempotency-Key on POST: the replay record and the request's effect are one unit.

A request with a key first *claims* it (a row with no answer yet, under a fresh attempt token), then runs:

- A route whose effect is a database write records its answer **in the same transaction** as the effect
  (``await record(request, conn, answer)``): a crash after the commit leaves the answer for the retry, a crash
  before it leaves nothing done. Only the attempt that holds the claim may record, so a run the key was taken
  from (it ran over a minute) rolls back instead of doing the work a second time.
- A route whose effect is a Temporal Update sends it with ``update_id(request)``: the same request retried is
  the same Update, which Temporal runs once and answers again with the first outcome.
- Any other route (a quote, a dry run) has no effect to repeat; the guard keeps its answer when it is sent.

A claim left without an answer (the process died in between) is free again after ``STALE`` for the same
request: re-running it is safe by the rules above. Secrets (a new API key) are never kept: the answer is kept
with those fields null.
"""

from __future__ import annotations

import hashlib
import json
import secrets as _secrets
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from sqlalchemy import text

from nodal.logging import get_logger
from workflows.common import IDEMPOTENT_UPDATE

STALE = "1 minute"
# The claim this run took, still without an answer: only it may record one, or give the key up.
_HELD = "key_hash = :k AND idempotency_key = :i AND attempt = :a AND status IS NULL"
# A replay gets back what the first request got, unless the outcome could differ on a retry: an auth
# failure (a key can be fixed), a conflict or a rate limit (they pass), or a server error (it may not recur).
NOT_KEPT = {401, 403, 409, 429}


@dataclass(frozen=True)
class Claim:
    key_hash: str  # the caller's API key, hashed: Idempotency-Keys are per API key
    key: str  # the Idempotency-Key
    fingerprint: str  # method, path, query and body, hashed
    attempt: str  # this run's hold on the key

    @property
    def params(self) -> dict[str, str]:
        return {"k": self.key_hash, "i": self.key, "f": self.fingerprint, "a": self.attempt}

    @property
    def operation_id(self) -> str:
        """The Temporal Update id of this request: the same for a retry, different for any other request (another
        caller, another body, the same key reused once it was forgotten)."""
        return IDEMPOTENT_UPDATE + hashlib.sha256(
            "\0".join((self.key_hash, self.key, self.fingerprint)).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Kept:
    fingerprint: str
    status: Optional[int]  # None: still running
    content_type: Optional[str]
    body: Optional[bytes]


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), query, body])).hexdigest()


async def claim(db, key_hash: str, key: str, fingerprint_: str, keep: str) -> Claim | Kept:
    """Take the key for this run, or say what it holds: an answer to replay, a run still going, another request."""
    c = Claim(key_hash, key, fingerprint_, _secrets.token_hex(16))
    async with db.engine.begin() as conn:
        # A key a day old is free again; so is one whose run died without an answer STALE ago (same request).
        taken = (await conn.execute(text(
            "INSERT INTO idempotent_requests (key_hash, idempotency_key, fingerprint, attempt)"
            " VALUES (:k, :i, :f, :a)"
            " ON CONFLICT (key_hash, idempotency_key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
            "  attempt = EXCLUDED.attempt, status = NULL, content_type = NULL, body = NULL, created_at = now(),"
            "  completed_at = NULL"
            f" WHERE idempotent_requests.created_at < now() - CAST('{keep}' AS interval)"
            "  OR (idempotent_requests.status IS NULL AND idempotent_requests.fingerprint = EXCLUDED.fingerprint"
            f"      AND idempotent_requests.created_at < now() - CAST('{STALE}' AS interval))"
            " RETURNING key_hash"), c.params)).first()
        if taken:
            return c
        row = (await conn.execute(text(
            "SELECT fingerprint, status, content_type, body FROM idempotent_requests"
            " WHERE key_hash = :k AND idempotency_key = :i"), c.params)).one()
    return Kept(row.fingerprint, row.status, row.content_type, row.body)


async def finish(db, c: Claim, status: int, content_type: Optional[str], body: bytes) -> None:
    """After the answer went out: keep it for a replay, or free the key so a retry runs again. A no-op when the
    route recorded its answer with its effect, or when this run no longer holds the key."""
    async with db.engine.begin() as conn:
        if status < 500 and status not in NOT_KEPT:
            await conn.execute(text(
                f"UPDATE idempotent_requests SET status = :s, content_type = :t, body = :b, completed_at = now()"
                f" WHERE {_HELD}"), {**c.params, "s": status, "t": content_type, "b": body})
        else:
            await conn.execute(text(f"DELETE FROM idempotent_requests WHERE {_HELD}"), c.params)


def claim_of(request: Request) -> Optional[Claim]:
    """The claim the guard took for this request (None without an Idempotency-Key)."""
    return request.scope.get("state", {}).get("idempotency")


def update_id(request: Request) -> Optional[str]:
    """The id to send this request's Temporal Update under (None: let the SDK pick one)."""
    c = claim_of(request)
    return c.operation_id if c else None


def _body(answer: Any) -> bytes:
    # As FastAPI's JSONResponse renders it, so a replay is byte for byte the first answer.
    return json.dumps(jsonable_encoder(answer), ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()


async def record(request: Request, conn, answer: Any, status: Optional[int] = None,
                 secret: Iterable[str] = ()) -> None:
    """Keep ``answer`` for a replay inside the transaction of the route's effect (call it last in that
    transaction). Raises 409, rolling the effect back, if this run lost the key to a retry that runs instead."""
    c = claim_of(request)
    if c is None:
        return
    route = request.scope.get("route")
    status = status or getattr(route, "status_code", None) or 200
    model = getattr(route, "response_model", None)
    if isinstance(model, type) and issubclass(model, BaseModel):  # as the answer goes out: through its model
        answer = model.model_validate(answer).model_dump(mode="json", by_alias=True)
    kept = _body(without_secrets(answer, secret))
    done = (await conn.execute(text(
        "UPDATE idempotent_requests SET status = :s, content_type = 'application/json', body = :b,"
        f" completed_at = now() WHERE {_HELD} RETURNING 1"),
        {**c.params, "s": status, "b": kept})).first()
    if done is None:
        get_logger(path=request.url.path).warning("api.idempotency_lost_claim")
        raise HTTPException(409, "a retry with this Idempotency-Key took over this request; its answer is the one kept")


def without_secrets(answer: Any, fields: Iterable[str]) -> Any:
    fields = [f for f in fields if f]
    if not fields or not isinstance(answer, dict):
        return answer
    return {**answer, **{f: None for f in fields if f in answer}}


def replay_headers(kept: Kept) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", (kept.content_type or "application/json").encode()),
            (b"content-length", str(len(kept.body or b"")).encode()), (b"idempotent-replayed", b"true")]


async def purge(db, hours: float) -> int:
    """Forget Idempotency-Keys older than they are kept (the recovery loop runs it)."""
    async with db.engine.begin() as conn:
        return (await conn.execute(text(
            "DELETE FROM idempotent_requests WHERE created_at < now() - make_interval(secs => :s)"),
            {"s": hours * 3600})).rowcount
