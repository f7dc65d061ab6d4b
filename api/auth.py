"""API keys: ``Authorization: Bearer <key>``; only a SHA-256 of each key is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Optional

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text

from models.status import Role

_bearer = HTTPBearer(auto_error=False)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_key_hash(authorization: Optional[str]) -> Optional[str]:
    """The hash of the key in an Authorization header; the scheme is case-insensitive, as HTTPBearer reads it."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    return hash_key(key) if scheme.lower() == "bearer" and key else None


def new_key() -> tuple[str, str]:
    """A fresh (key_id, key); the key is shown once and never stored."""
    key_id = "k_" + secrets.token_hex(6)
    return key_id, f"ndl_{key_id[2:]}_{secrets.token_urlsafe(24)}"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    channel: Optional[str] = None
    node_id: Optional[str] = None
    tier: Optional[str] = None  # a client key an admin bound to a customer tier (protected stock)
    approver: bool = False  # a client key that may approve its channel's orders awaiting approval
    carrier: Optional[str] = None  # a carrier key: the carrier whose scans it sends

    def buying_tier(self, asked: Optional[str]) -> Optional[str]:
        """The tier this caller buys as: a client key's own (naming another is refused), what staff name."""
        if self.role in (Role.admin, Role.support):
            return asked
        if asked is not None and asked != self.tier:
            raise HTTPException(403, f"this key buys as tier {self.tier or '(none)'}, not {asked}:"
                                     " an admin binds a client key to a tier (POST /api-keys {tier})")
        return self.tier

    def can_see_channel(self, channel: str) -> bool:
        return self.role in (Role.admin, Role.support) or (self.role == Role.client and self.channel == channel)

    def can_touch_node(self, node_id: str) -> bool:
        return self.role in (Role.admin, Role.support) or (self.role == Role.partner and self.node_id == node_id)


class KeyCache:
    """Valid keys seen recently (by hash), so a hot read path costs no key lookup per request."""

    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._seen: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Optional[Principal]:
        hit = self._seen.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: str, p: Principal) -> None:
        if self.ttl > 0:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key_hash] = (time.monotonic() + self.ttl, p)

    def forget(self, key_id: str) -> None:
        self._seen = {h: v for h, v in self._seen.items() if v[1].key_id != key_id}


def _what_is_missing(sent: Optional[str]) -> str:
    words = (sent or "").split()
    if not words:
        return "missing API key: send Authorization: Bearer <key>"
    if words[0].lower() == "bearer":
        return "missing API key after 'Bearer': send Authorization: Bearer <key>"
    return "the Authorization header must read 'Bearer <key>': the Bearer scheme is missing"


async def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    if creds is None or not creds.credentials:
        raise HTTPException(401, _what_is_missing(request.headers.get("authorization")),
                            headers={"WWW-Authenticate": "Bearer"})
    # The request guard hashed it already (scope state) unless the app runs without the guard.
    key_hash = getattr(request.state, "key_hash", None) or hash_key(creds.credentials)
    cache: KeyCache = request.app.state.key_cache
    if (known := cache.get(key_hash)) is not None:
        return known
    async with request.app.state.db.engine.connect() as conn:
        row = (await conn.execute(
            text("SELECT key_id, role, channel, node_id, tier, approver, carrier FROM api_keys"
                 " WHERE key_hash = :h AND revoked_at IS NULL"),
            {"h": key_hash},
        )).first()
    if row is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    p = Principal(row.key_id, Role(row.role), row.channel, row.node_id, row.tier, row.approver, row.carrier)
    cache.put(key_hash, p)
    return p


def require(*roles: Role):
    async def dep(p: Principal = Depends(principal)) -> Principal:
        if p.role not in roles:
            raise HTTPException(403, f"role {p.role.value} may not do this")
        return p

    return dep


ANY_ROLE = require(Role.admin, Role.support, Role.client, Role.partner)
ADMIN = require(Role.admin)
STAFF = require(Role.admin, Role.support)


# The bootstrap key opens everything: long and varied enough that guessing it is hopeless (the generated
# one is 42 characters of 64 symbols).
ADMIN_KEY_MIN_LENGTH = 24
ADMIN_KEY_MIN_DISTINCT = 12


def admin_key_problem(key: str) -> Optional[str]:
    """Why this NODAL_ADMIN_KEY is too weak to accept, or None."""
    if len(key) < ADMIN_KEY_MIN_LENGTH:
        return f"NODAL_ADMIN_KEY has {len(key)} characters; it needs at least {ADMIN_KEY_MIN_LENGTH}"
    if len(set(key)) < ADMIN_KEY_MIN_DISTINCT:
        return f"NODAL_ADMIN_KEY repeats a few characters; it needs at least {ADMIN_KEY_MIN_DISTINCT} different ones"
    return None


async def ensure_admin_key(db, key: str) -> None:
    """Install the bootstrap admin key (NODAL_ADMIN_KEY); a weak one is refused, so the API does not start."""
    if (problem := admin_key_problem(key)) is not None:
        raise ValueError(f"{problem} (generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO api_keys (key_id, key_hash, role, label, created_at) VALUES"
                " ('admin-bootstrap', :h, 'admin', 'NODAL_ADMIN_KEY', now())"
                " ON CONFLICT (key_id) DO UPDATE SET key_hash = EXCLUDED.key_hash, revoked_at = NULL"
            ),
            {"h": hash_key(key)},
        )
