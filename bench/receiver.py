"""A fast webhook receiver for the benches: answers every POST 200 at once and counts them (GET /count), in a
process of its own (uvicorn with uvloop and httptools).

    python bench/receiver.py --port 9100
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

COUNTS: Counter = Counter()
IDS: set[str] = set()


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["method"] == "GET":
        body = json.dumps({"posts": dict(COUNTS), "unique": len(IDS)}).encode()
    else:
        COUNTS[scope["path"]] += 1
        for k, v in scope["headers"]:
            if k == b"webhook-id":
                IDS.add(v.decode())
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="error", access_log=False, loop="uvloop",
                http="httptools", interface="asgi3")


if __name__ == "__main__":
    main()
