"""Every endpoint × every role: allowed, or 401/403 — and a denied call changes nothing (database or workflow).

The table is the contract (README, "What each role sees"): a new endpoint fails this test until it says who may
call it. Denied calls carry valid bodies and real ids, so "changes nothing" means the check stopped them,
not a validation error.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.conftest import ADMIN_KEY, Api, make_network, order_body
from tests.integration.flow import fulfillment, order_status, release, walk
from tests.integration.receiver import serving, until

pytestmark = pytest.mark.integration

ROLES = ("admin", "support", "client", "client_other", "partner", "partner_other", "carrier", "anonymous")
ALL = set(ROLES) - {"anonymous", "carrier"}  # a carrier's key sends its scans, nothing else
STAFF = {"admin", "support"}
OWN_ORDER = {"admin", "support", "client"}  # a client only for its own channel
OWN_NODE = {"admin", "support", "partner"}  # a partner only for its own node
PUBLIC = set(ROLES)

# (method, path template) → the roles allowed. Every route of the app must be here.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("POST", "/orders"): {"admin", "client"},
    ("POST", "/orders/import"): {"admin", "client"},  # and each order of the file for the key's channel only
    ("GET", "/orders"): ALL - {"partner", "partner_other"},
    ("GET", "/orders/{order_id}"): OWN_ORDER,
    ("PATCH", "/orders/{order_id}"): OWN_ORDER,
    ("POST", "/orders/{order_id}/cancel"): OWN_ORDER,
    ("POST", "/orders/{order_id}/reorchestrate"): STAFF,
    ("POST", "/orders/{order_id}/returns"): OWN_ORDER,
    ("POST", "/orders/{order_id}/exchanges"): OWN_ORDER,
    ("POST", "/orders/{order_id}/approve"): STAFF,  # and a client key flagged approver (test_approval.py)
    ("POST", "/orders/{order_id}/decline"): STAFF,
    ("POST", "/holds"): {"admin", "client"},
    ("GET", "/holds/{hold_id}"): OWN_ORDER,
    ("DELETE", "/holds/{hold_id}"): {"admin", "client"},
    ("GET", "/fulfillments"): STAFF | {"partner", "partner_other"},  # a partner: its own node's queue
    ("GET", "/fulfillments/{fulfillment_id}"): OWN_NODE,
    ("POST", "/fulfillments/{fulfillment_id}/{milestone}"): OWN_NODE,
    ("GET", "/returns/{return_id}"): OWN_NODE | {"client"},
    ("POST", "/returns/{return_id}/receive"): OWN_NODE,
    ("PUT", "/nodes/{node_id}"): {"admin"},
    ("PATCH", "/nodes/{node_id}"): {"admin"},
    ("GET", "/nodes/{node_id}"): ALL,
    ("GET", "/nodes"): ALL,
    ("PUT", "/service-areas"): {"admin"},
    ("GET", "/service-areas/{postal_code}"): ALL,
    ("PUT", "/skus/{sku}"): {"admin"},
    ("GET", "/skus/{sku}"): ALL,
    ("PUT", "/inventory/{node_id}"): {"admin", "partner"},
    ("GET", "/inventory/{node_id}"): ALL - {"partner_other"},
    ("POST", "/inventory/adjustments"): {"admin", "partner"},
    ("POST", "/inventory/{node_id}/{sku}/inspect"): {"admin", "partner"},
    ("GET", "/availability"): ALL,
    ("GET", "/inventory/{node_id}/{sku}/ledger"): OWN_NODE,
    ("PUT", "/channels/{channel}"): {"admin"},
    ("GET", "/channels/{channel}"): STAFF | {"client"},  # a client: its own channel's view
    ("GET", "/channels/{channel}/feed"): STAFF | {"client"},
    ("GET", "/safety-stock-defaults"): ALL,
    ("PUT", "/safety-stock-defaults"): {"admin"},
    ("PUT", "/protected-stock"): {"admin"},
    ("GET", "/protected-stock"): STAFF,
    ("POST", "/inventory/supply"): {"admin", "partner"},
    ("GET", "/routing-rules"): STAFF,
    ("PUT", "/routing-rules"): {"admin"},
    ("POST", "/routing/simulate"): OWN_ORDER,  # a client simulates its own channel's orders
    ("GET", "/forecast"): STAFF,
    ("PUT", "/forecast"): {"admin"},
    ("GET", "/bid-prices"): STAFF,
    ("POST", "/promise"): {"admin", "support", "client"},
    ("GET", "/carriers"): ALL,
    ("PUT", "/carriers/{carrier}/closures"): {"admin"},
    ("GET", "/api-keys"): {"admin"},
    ("POST", "/api-keys"): {"admin"},
    ("DELETE", "/api-keys/{key_id}"): {"admin"},
    ("GET", "/livez"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/kpis"): STAFF,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/codec/{operation}"): STAFF,  # workflow payloads hold customers' data
    # A subscription of the client's channel (a partner subscribes to its own node's: test_webhooks.py).
    ("PUT", "/webhooks/{name}"): {"admin", "client"},
    ("GET", "/webhooks"): ALL,  # each its own: a channel's, a node's; staff all
    ("DELETE", "/webhooks/{name}"): {"admin", "client"},
    ("POST", "/webhooks/{name}/rotate-secret"): {"admin", "client"},
    ("POST", "/webhooks/{name}/replay"): {"admin", "client"},
    ("GET", "/webhooks/{name}/deliveries"): {"admin", "support", "client"},
    ("POST", "/carriers/{carrier}/events"): {"admin", "carrier"},  # that carrier's key only
    ("GET", "/track/{order_id}"): PUBLIC,  # the customer's: by the order's email or its signed link
}

# How an allowed GET's answer depends on who asks; a new GET fails the test until it says. SAME: every allowed role
# gets the same answer. A check: what one role got holds only what is its own (its channel's, its node's).
# A reason string: the answer holds nothing of anyone's.
SAME = "same for every allowed role"


def _own_channel_orders(role, body, ctx):
    channels = {o["channel"] for o in body["orders"]}
    if role == "client" and channels != {ctx["channel"]}:
        return f"a client listed orders of channels {sorted(channels)}"


def _own_node_work(role, body, ctx):
    nodes = {f["node_id"] for f in body["fulfillments"]}
    own = {"partner": ctx["node"], "partner_other": ctx["other_node"]}.get(role)
    if own and not nodes <= {own}:
        return f"{role} listed work of nodes {sorted(nodes)}"
    if role == "partner" and not nodes:
        return "the partner's own work queue came back empty"


def _scorecards(role, body, ctx):
    nodes = body.get("nodes") or [body]
    shown = {n["node_id"] for n in nodes if n.get("scorecard") is not None}
    allowed = {n["node_id"] for n in nodes} if role in STAFF else {
        "partner": {ctx["node"]}, "partner_other": {ctx["other_node"]}}.get(role, set())
    if not shown <= allowed:
        return f"{role} read the scorecards of {sorted(shown - allowed)}"
    if role in STAFF and not shown:
        return "staff read no scorecard"


def _own_webhooks(role, body, ctx):
    hooks = body["webhooks"]
    own = {"client": ("channel", ctx["channel"]), "client_other": ("channel", ctx["other_channel"]),
           "partner": ("node_id", ctx["node"]), "partner_other": ("node_id", ctx["other_node"])}.get(role)
    if own is not None and any(h[own[0]] != own[1] for h in hooks):
        return f"{role} listed webhooks of others: {[h['name'] for h in hooks]}"
    return None


def _channel_view(role, body, ctx):
    def stock(answer):  # how fresh each answer is differs by the moment it was given
        return {k: v for k, v in answer.items() if k != "freshness"}
    if role == "client" and stock(body) != stock(ctx["answers"][("admin", "/availability", ctx["channel"])]):
        return "a client's availability is not its own channel's view"


SCOPE = {
    ("GET", "/orders"): _own_channel_orders,
    ("GET", "/orders/{order_id}"): SAME,
    ("GET", "/holds/{hold_id}"): SAME,
    ("GET", "/fulfillments"): _own_node_work,
    ("GET", "/fulfillments/{fulfillment_id}"): SAME,
    ("GET", "/returns/{return_id}"): SAME,
    ("GET", "/nodes"): _scorecards,
    ("GET", "/nodes/{node_id}"): _scorecards,
    ("GET", "/service-areas/{postal_code}"): SAME,
    ("GET", "/skus/{sku}"): SAME,
    ("GET", "/inventory/{node_id}"): SAME,
    ("GET", "/inventory/{node_id}/{sku}/ledger"): SAME,
    ("GET", "/availability"): _channel_view,
    ("GET", "/channels/{channel}"): SAME,
    ("GET", "/channels/{channel}/feed"): SAME,
    ("GET", "/safety-stock-defaults"): SAME,
    ("GET", "/protected-stock"): SAME,
    ("GET", "/routing-rules"): SAME,
    ("GET", "/forecast"): SAME,
    ("GET", "/bid-prices"): SAME,
    ("GET", "/carriers"): SAME,
    ("GET", "/api-keys"): SAME,
    ("GET", "/kpis"): SAME,
    ("GET", "/webhooks"): _own_webhooks,
    ("GET", "/webhooks/{name}/deliveries"): SAME,
    ("GET", "/track/{order_id}"): SAME,
    ("GET", "/livez"): "liveness only",
    ("GET", "/healthz"): "the components' health only",
    ("GET", "/metrics"): "process counters, no order, customer or node data",
}
# Lists and searches are asked with their filters; the rest of a path's ids come from the resources in play.
QUERIES = {("GET", "/orders"): "?limit=500", ("GET", "/fulfillments"): "?limit=1000",
           ("GET", "/availability"): "?skus={sku}&postal_code={postal_code}",
           ("POST", "/orders/import"): "?channel={channel}", ("GET", "/track/{order_id}"): "?email=jane.doe@example.com"}

# Every table's rows a denied call must leave as they were, but those the system rewrites on its own: the bid
# price schedule, Temporal's large payloads (written by workers for any workflow) and Alembic's bookkeeping.
REWRITTEN_ON_THEIR_OWN = {"bid_prices", "payload_blobs", "alembic_version"}


async def snapshot(db) -> dict[str, str]:
    from models.tables import SQLModel

    async with db.engine.connect() as conn:
        present = {r[0] for r in await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))}
        modelled = set(SQLModel.metadata.tables)
        assert modelled <= present, f"watched tables missing from the database: {sorted(modelled - present)}"
        out = {}
        for t in sorted(present - REWRITTEN_ON_THEIR_OWN):
            rows = (await conn.execute(text(f"SELECT t::text FROM {t} t ORDER BY 1"))).scalars().all()
            out[t] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    assert {"checkout_holds", "timeline_events", "adapter_calls", "supply_claims", "idempotent_requests"} <= set(out)
    return out


async def history_length(temporal_env, workflow_id: str) -> int:
    return len((await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()).events)


async def test_every_endpoint_for_every_role(api: Api, db, temporal_env, settings):
    async with serving() as receiver:
        name = await every_endpoint_for_every_role(api, db, temporal_env, settings, receiver)
        await api.call("DELETE", f"/webhooks/{name}")


async def every_endpoint_for_every_role(api: Api, db, temporal_env, settings, receiver):
    from api.app import create_app

    routes = {(m.upper(), path) for path, ops in create_app(settings).openapi()["paths"].items() for m in ops}
    assert routes == set(MATRIX), f"say who may call: {sorted(routes ^ set(MATRIX))}"
    reads = {r for r in routes if r[0] == "GET"}
    assert reads == set(SCOPE), f"say how the answer depends on the caller: {sorted(reads ^ set(SCOPE))}"

    net = await make_network(api)
    other_channel = await make_network(api)
    dc, other_dc = net.node("DC-N"), net.node("DC-S")
    keys = {"admin": ADMIN_KEY, "support": await api.key("support"), "client": net.client_key,
            "client_other": other_channel.client_key, "partner": await api.key("partner", node_id=dc),
            "partner_other": await api.key("partner", node_id=other_dc), "carrier": await api.key("carrier", carrier="ups"),
            "anonymous": None}
    # A delivered order with a return, a live one awaiting its partner, and a hold: the resources in play.
    done = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                         json=order_body(net, [("SKU1", 1), ("SKU2", 1)])))["order_id"]
    await release(api, temporal_env, done, settings)
    f_done = await fulfillment(api, done, dc)
    await walk(api, f_done, keys["partner"])
    await order_status(api, done, "delivered")
    ret = await api.ok("POST", f"/orders/{done}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"})
    live = (await api.ok("POST", "/orders", key=net.client_key, expect=201,
                         json=order_body(net, [("SKU1", 1)])))["order_id"]
    await release(api, temporal_env, live, settings)
    f_live = await fulfillment(api, live, dc)
    await api.ok("POST", "/orders", key=other_channel.client_key, expect=201,  # another channel's, to be kept out
                 json=order_body(other_channel, [("SKU1", 1)]))
    hold = await api.ok("POST", "/holds", key=net.client_key, expect=201, json={
        "channel": net.channel, "destination": {"postal_code": net.postal_code},
        "lines": [{"sku": net.skus[2], "qty": 1}]})
    spare_key_id = (await api.ok("POST", "/api-keys", json={"role": "support", "label": "to revoke"}))["key_id"]
    soon = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    ids = {"order_id": live, "hold_id": hold["hold_id"], "fulfillment_id": f_live["fulfillment_id"],
           "milestone": "accept", "return_id": ret["return_id"], "node_id": dc, "sku": net.skus[0],
           "postal_code": net.postal_code, "channel": net.channel, "carrier": "ups", "key_id": spare_key_id,
           "operation": "decode", "name": f"{net.prefix}-hook"}
    address = {"postal_code": net.postal_code, "line1": "2 Main St"}
    bodies = {
        ("POST", "/orders"): order_body(net, [("SKU1", 1)]),
        ("PATCH", "/orders/{order_id}"): {"address": address},
        ("POST", "/orders/{order_id}/cancel"): {"reason": "changed my mind"},
        ("POST", "/orders/{order_id}/reorchestrate"): {"reason": "stuck", "exclude_nodes": [dc]},
        ("POST", "/orders/{order_id}/returns"): {"lines": [{"line_id": "L1", "qty": 1}], "reason": "x"},
        ("POST", "/orders/{order_id}/exchanges"): {"lines": [{"line_id": "L1", "qty": 1, "sku": net.skus[1]}],
                                                   "reason": "x"},
        ("POST", "/orders/{order_id}/approve"): {"note": "ok"},
        ("POST", "/orders/{order_id}/decline"): {"reason": "over budget"},
        ("POST", "/holds"): {"channel": net.channel, "destination": {"postal_code": net.postal_code},
                             "lines": [{"sku": net.skus[0], "qty": 1}]},
        ("POST", "/returns/{return_id}/receive"): {"lines": [{"line_id": "L1", "qty": 1, "disposition": "sellable"}]},
        ("PUT", "/nodes/{node_id}"): {"name": "DC-N", "type": "dc", "lat": 41.9, "lon": -87.6, "postal_code": "60601",
                                      "capabilities": ["ship"], "enabled": True},
        ("PATCH", "/nodes/{node_id}"): {"enabled": False},
        ("PUT", "/service-areas"): [{"postal_code": net.postal_code, "nodes": [{"node_id": dc, "priority": 1}]}],
        ("PUT", "/skus/{sku}"): {"name": "renamed", "weight_kg": 2.0},
        ("PUT", "/inventory/{node_id}"): {"as_of": datetime.now(timezone.utc).isoformat(),
                                          "items": [{"sku": net.skus[0], "on_hand": 1}]},
        ("POST", "/inventory/adjustments"): [{"event_id": uuid.uuid4().hex, "node_id": dc, "sku": net.skus[0],
                                              "delta": -1, "reason": "damaged"}],
        ("POST", "/inventory/{node_id}/{sku}/inspect"): {"event_id": uuid.uuid4().hex, "qty": 1,
                                                          "disposition": "damaged"},
        ("PUT", "/channels/{channel}"): {"buffer_units": 5},
        ("PUT", "/safety-stock-defaults"): {"node_types": {"dc": 2}},
        ("PUT", "/protected-stock"): [{"node_id": dc, "sku": net.skus[0], "tier": "gold", "qty": 3}],
        ("POST", "/inventory/supply"): [{"supply_id": uuid.uuid4().hex, "node_id": dc, "sku": net.skus[0],
                                         "qty": 5, "eta": soon}],
        ("PUT", "/routing-rules"): {"priority_step": "1"},
        ("POST", "/routing/simulate"): {"channel": net.channel, "lines": [{"sku": net.skus[0], "qty": 1, "delivery": {
            "method": "ship_standard", "address": address}}]},
        ("PUT", "/forecast"): {"horizon_days": 7, "entries": []},
        ("POST", "/promise"): {"channel": net.channel, "destination": {"postal_code": net.postal_code},
                               "lines": [{"sku": net.skus[0], "qty": 1}]},
        ("PUT", "/carriers/{carrier}/closures"): [{"day": soon[:10], "reason": "storm"}],
        ("POST", "/api-keys"): {"role": "admin"},
        ("POST", "/codec/{operation}"): {"payloads": []},
        ("PUT", "/webhooks/{name}"): {"url": receiver.url, "events": ["order.*"], "channel": net.channel},
        ("POST", "/webhooks/{name}/rotate-secret"): {"overlap": "1h"},
        ("POST", "/webhooks/{name}/replay"): {"since": "2026-01-01T00:00:00Z"},
        ("POST", "/carriers/{carrier}/events"): [{"tracking": "UPS-NOT-OURS", "event": "in_transit",
                                                  "at": "2026-12-01T09:00:00Z"}],
    }

    # Allowed calls to network-wide settings send what leaves them as the other tests expect them.
    neutral = {("PUT", "/safety-stock-defaults"): {}, ("PUT", "/routing-rules"): {},
               ("PUT", "/carriers/{carrier}/closures"): []}

    # A channel whose view differs from the whole pool, so a client's availability shows which one it got.
    await api.ok("PUT", f"/channels/{net.channel}", json={"buffer_units": 2})

    async def call(role: str, method: str, template: str, denied: bool = True):
        path = (template + QUERIES.get((method, template), "")).format(**ids)
        body = bodies.get((method, template)) if denied else neutral.get((method, template), bodies.get((method, template)))
        return await api.call(method, path, key=keys[role], json=body)

    # The channel's subscription, its deliveries done before the snapshot (they are written as orders change).
    await api.ok("PUT", f"/webhooks/{ids['name']}", json={"url": receiver.url, "events": ["*"], "channel": net.channel})

    async def settled() -> bool:
        async with db.engine.connect() as conn:
            return not (await conn.execute(text("SELECT 1 FROM webhook_deliveries WHERE status = 'pending'"
                                                " AND webhook = :w LIMIT 1"), {"w": ids["name"]})).first()
    await until(settled, 30, "the subscription's deliveries")

    # Denied calls first, all of them, between two snapshots of the database and the live order's history.
    before, events = await snapshot(db), await history_length(temporal_env, live)
    wrong = []
    for (method, template), allowed in sorted(MATRIX.items()):
        for role in ROLES:
            if role in allowed:
                continue
            r = await call(role, method, template)
            expected = 401 if role == "anonymous" else 403
            if r.status_code != expected or not r.json().get("detail"):
                wrong.append(f"{role} {method} {template} → {r.status_code} (expected {expected}): {r.text[:120]}")
    assert not wrong, "\n".join(wrong)
    # Effects of a call land asynchronously too (workflows, their activities): look again after a while.
    for _ in range(2):
        await asyncio.sleep(1)
        after = await snapshot(db)
        assert after == before, [t for t in before if before[t] != after[t]]
        assert await history_length(temporal_env, live) == events

    # Then the allowed ones: past the check (their answer may still be 404, 409 or 422 on these resources), and
    # each read answering with what is the caller's own.
    availability = QUERIES[("GET", "/availability")].format(**ids) + f"&channel={net.channel}"
    ctx = {"channel": net.channel, "other_channel": other_channel.channel, "node": dc, "other_node": other_dc, "answers": {
        ("admin", "/availability", net.channel): await api.ok("GET", "/availability" + availability)}}
    for (method, template), allowed in sorted(MATRIX.items()):
        answers = {}
        for role in sorted(allowed):
            r = await call(role, method, template, denied=False)
            if r.status_code in (401, 403) or r.status_code >= 500:
                wrong.append(f"{role} {method} {template} → {r.status_code}: {r.text[:120]}")
            answers[role] = r
        scope = SCOPE.get((method, template))
        if scope is None or isinstance(scope, str) and scope != SAME:
            continue
        if scope == SAME:
            if len({(r.status_code, r.content) for r in answers.values()}) > 1:
                wrong.append(f"GET {template}: answers differ by role ({sorted(answers)})")
        elif any(r.status_code != 200 for r in answers.values()):
            wrong.append(f"GET {template}: the scope check needs 200s, got "
                         f"{ {k: r.status_code for k, r in answers.items()} }")
        else:
            wrong += [f"GET {template}: {why}" for role, r in answers.items() if (why := scope(role, r.json(), ctx))]
    assert not wrong, "\n".join(wrong)
    return ids["name"]
