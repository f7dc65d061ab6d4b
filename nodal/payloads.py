"""Large Temporal payloads live in PostgreSQL, their workflow histories hold a reference (claim check).

Temporal refuses a payload over 2 MB and a history over 50 MB; a 20,000-line order is several megabytes as
placed, and so are its plan and its state when it continues as new. The SDK's external storage keeps any
payload over ``THRESHOLD`` (32 KB) out of the history: this driver writes it (encrypted first when
NODAL_ENCRYPTION_KEY is set: the codec runs before it) compressed to ``payload_blobs``, keyed by the workflow it
belongs to and its digest, so a retried write is a no-op; workers, clients and the codec endpoint read it back.
Blobs go when Temporal no longer holds their workflow (``purge``).
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from typing import Optional, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ExternalStorage, StorageDriver, StorageDriverClaim, StorageDriverRetrieveContext, StorageDriverStoreContext,
)

# Well below Temporal's 256 KiB warning: nothing near a limit is ever inline, and a large order's many mid-sized
# payloads (a thousand-line fulfillment's changes, 70 KB each, a hundred of them) do not fill its history.
THRESHOLD = 32 * 1024
NO_WORKFLOW = "-"


class PostgresPayloads(StorageDriver):
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    def name(self) -> str:
        return "nodal-postgres"

    def type(self) -> str:
        return "nodal-postgres"

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        owner = getattr(context.target, "id", None) or NO_WORKFLOW
        # Off the event loop (hashing and compression release the GIL): the worker's workflow tasks go on meanwhile.
        rows = await asyncio.to_thread(_pack, owner, payloads)
        claims = [StorageDriverClaim({"workflow_id": owner, "digest": r["d"]}) for r in rows]
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO payload_blobs (workflow_id, digest, data, size, created_at) VALUES (:w, :d, :data, :n, now())"
                " ON CONFLICT DO NOTHING"), rows)
        return claims

    async def retrieve(self, context: StorageDriverRetrieveContext,
                       claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        keys = [(c.claim_data["workflow_id"], c.claim_data["digest"]) for c in claims]
        async with self.engine.connect() as conn:
            found = {(r.workflow_id, r.digest): r.data for r in (await conn.execute(text(
                "SELECT workflow_id, digest, data FROM payload_blobs WHERE (workflow_id, digest) IN"
                " (SELECT * FROM unnest(CAST(:w AS varchar[]), CAST(:d AS varchar[])))"),
                {"w": [k[0] for k in keys], "d": [k[1] for k in keys]})).all()}
        for k in keys:
            if k not in found:
                raise RuntimeError(f"payload {k[1][:12]}… of workflow {k[0]} is missing from payload_blobs")
        return await asyncio.to_thread(lambda: [Payload.FromString(zlib.decompress(found[k])) for k in keys])


def _pack(owner: str, payloads: Sequence[Payload]) -> list[dict]:
    rows = []
    for p in payloads:
        raw = p.SerializeToString()
        rows.append({"w": owner, "d": hashlib.sha256(raw).hexdigest(), "data": zlib.compress(raw, 3), "n": len(raw)})
    return rows


def external_storage(engine: Optional[AsyncEngine]) -> Optional[ExternalStorage]:
    return None if engine is None else ExternalStorage(drivers=[PostgresPayloads(engine)],
                                                       payload_size_threshold=THRESHOLD)


async def purge(engine: AsyncEngine, client, limit: int = 200) -> int:
    """Delete the blobs of workflows Temporal no longer holds (past the namespace's retention); a day old at least."""
    from temporalio.service import RPCError, RPCStatusCode

    async with engine.connect() as conn:
        owners = [r.workflow_id for r in (await conn.execute(text(
            "SELECT DISTINCT workflow_id FROM payload_blobs WHERE created_at < now() - interval '1 day' LIMIT :n"),
            {"n": limit})).all()]
    gone = []
    for wid in owners:
        try:
            await client.get_workflow_handle(wid).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                gone.append(wid)
    if gone:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM payload_blobs WHERE workflow_id = ANY(:w)"), {"w": gone})
    return len(gone)
