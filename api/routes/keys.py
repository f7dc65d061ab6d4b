"""API keys: admins create them per role (a partner key is bound to one node) and revoke them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import text

import api.answers as A
from api.auth import ADMIN, Principal, hash_key, new_key
from api import idempotency
from api.schemas import ApiKeyIn
from models.status import Role

router = APIRouter(tags=["access"])


@router.post("/api-keys", status_code=201, summary="Create a key; the key itself is shown only in this answer",
             response_model=A.KeyCreated, responses=A.errors(403, 422))
async def create_key(body: ApiKeyIn, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    if body.role == Role.partner and not body.node_id:
        raise HTTPException(422, "a partner key needs node_id")
    if body.role == Role.client and not body.channel:
        raise HTTPException(422, "a client key needs channel")
    if body.role != Role.partner and body.node_id:
        raise HTTPException(422, "only partner keys are bound to a node")
    if body.role != Role.client and body.tier:
        raise HTTPException(422, "only client keys are bound to a customer tier")
    if body.role != Role.client and body.approver:
        raise HTTPException(422, "only client keys are approvers (staff approve any order)")
    if (body.role == Role.carrier) != (body.carrier is not None):
        raise HTTPException(422, "a carrier key, and only a carrier key, names its carrier")
    async with request.app.state.db.engine.begin() as conn:
        if body.node_id and (await conn.execute(
                text("SELECT 1 FROM nodes WHERE node_id = :n"), {"n": body.node_id})).first() is None:
            raise HTTPException(422, f"unknown node {body.node_id}")
        key_id, key = new_key()
        await conn.execute(text(
            "INSERT INTO api_keys (key_id, key_hash, role, channel, node_id, tier, approver, carrier, label, created_at)"
            " VALUES (:i, :h, :r, :c, :n, :t, :a, :k, :l, now())"),
            dict(i=key_id, h=hash_key(key), r=body.role.value, c=body.channel, n=body.node_id, t=body.tier,
                 a=body.approver, k=body.carrier, l=body.label))
        answer = {"key_id": key_id, "key": key, "role": body.role.value, "channel": body.channel,
                  "node_id": body.node_id, "tier": body.tier, "approver": body.approver, "carrier": body.carrier}
        # The key is shown in this answer only: a replay by Idempotency-Key answers the rest with key null.
        await idempotency.record(request, conn, answer, secret=["key"])
    return answer


@router.get("/api-keys", summary="Every key (never the key itself)", response_model=A.KeyList,
            responses=A.errors(403))
async def list_keys(request: Request, _: Principal = Depends(ADMIN)) -> dict:
    async with request.app.state.db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT key_id, role, channel, node_id, tier, approver, carrier, label, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at"))).all()
    return {"api_keys": [{
        "key_id": r.key_id, "role": r.role, "channel": r.channel, "node_id": r.node_id, "tier": r.tier,
        "approver": r.approver, "carrier": r.carrier, "label": r.label,
        "created_at": r.created_at.isoformat(), "revoked": r.revoked_at is not None} for r in rows]}


@router.delete("/api-keys/{key_id}", summary="Revoke a key", response_model=A.KeyRevoked, responses=A.errors(403, 404))
async def revoke_key(key_id: str, request: Request, _: Principal = Depends(ADMIN)) -> dict:
    async with request.app.state.db.engine.begin() as conn:
        row = (await conn.execute(text(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE key_id = :i RETURNING key_id"),
            {"i": key_id})).first()
    if row is None:
        raise HTTPException(404, f"no key {key_id}")
    request.app.state.key_cache.forget(key_id)
    return {"key_id": key_id, "revoked": True}
