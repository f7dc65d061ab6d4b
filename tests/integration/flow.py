"""Steps of an order's life as API clients and partners take them."""

from __future__ import annotations

from tests.integration.conftest import Api, Net, eventually, order_body


async def place(api: Api, net: Net, lines, key: str | None = None, **extra) -> dict:
    return await api.ok("POST", "/orders", key=key or net.client_key, json=order_body(net, lines, **extra), expect=201)


async def b2b_key(api: Api, net: Net) -> str:
    """A client key of the channel bound to the b2b tier (an admin's doing): its orders are B2B orders."""
    return await api.key("client", channel=net.channel, tier="b2b")


async def release(api: Api, env, order_id: str, settings) -> dict:
    """Let the remorse window pass and wait for the fulfillments to be released."""
    await env.fast_forward(env.client.get_workflow_handle(order_id), settings.remorse_window)
    return await eventually(lambda: _released(api, order_id), what=f"{order_id} released")


async def _released(api: Api, order_id: str):
    o = await api.ok("GET", f"/orders/{order_id}")
    return o if o["fulfillments"] and o["status"] != "awaiting_release" else None


async def fulfillment(api: Api, order_id: str, node_id: str, status: str = "released") -> dict:
    async def find():
        o = await api.ok("GET", f"/orders/{order_id}")
        return next((f for f in o["fulfillments"] if f["node_id"] == node_id and f["status"] == status), None)
    return await eventually(find, what=f"{status} fulfillment at {node_id}")


async def walk(api: Api, f: dict, key: str, upto: str = "deliver") -> None:
    steps = ["accept", "pick", "pack", "ship", "deliver"]
    for step in steps[: steps.index(upto) + 1]:
        body = {"lines": [{"line_id": l["line_id"], "qty": l["qty"]} for l in f["lines"]]} if step == "pick" else None
        await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/{step}", key=key, json=body)


async def order_status(api: Api, order_id: str, status: str) -> dict:
    async def check():
        o = await api.ok("GET", f"/orders/{order_id}")
        return o if o["status"] == status else None
    return await eventually(check, what=f"{order_id} {status}")


async def released_to(api: Api, env, settings, net: Net, lines, node: str = "DC-N", **extra) -> tuple[str, dict]:
    """Place an order, let its remorse window pass, and return it with the fulfillment released to ``node``."""
    oid = (await place(api, net, lines, **extra))["order_id"]
    await release(api, env, oid, settings)
    return oid, await fulfillment(api, oid, net.node(node))
