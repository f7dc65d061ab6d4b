"""One racing process: N concurrent single-unit reservations against the same position.

Run as ``python -m tests.integration.race_worker URL NODE SKU PREFIX N``; prints how many landed.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone

from inventory import service
from nodal.db import Database


async def main(url: str, node: str, sku: str, prefix: str, n: int) -> int:
    db = Database(url, pool_size=8, max_overflow=0)

    async def one(i: int) -> bool:
        async with db.engine.begin() as conn:
            short = await service.reserve(conn, f"{prefix}-o{i}", [service.Hold(f"{prefix}-f{i}", "L1", node, sku, 1)],
                                          datetime.now(timezone.utc))
            if short:
                await conn.rollback()
            return not short

    results = await asyncio.gather(*(one(i) for i in range(n)))
    await db.dispose()
    return sum(results)


if __name__ == "__main__":
    url, node, sku, prefix, n = sys.argv[1:6]
    print(asyncio.run(main(url, node, sku, prefix, int(n))))
