"""What every request passes first: Idempotency-Key replays, the per-key rate limit, body size limits."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy import text

from api import idempotency
from api.app import create_app
from tests.integration.conftest import (
    ADMIN_KEY, Api, make_network, order_body, retry_after_crash, send_and_crash, settings_for, tables_holding,
)
from tests.integration.flow import order_status, place, released_to, walk

pytestmark = pytest.mark.integration


async def keys_labelled(api: Api, label: str, key: str = ADMIN_KEY) -> list[dict]:
    return [k for k in (await api.ok("GET", "/api-keys", key=key))["api_keys"] if k.get("label") == label]


async def test_a_post_replayed_with_its_idempotency_key_gets_the_first_response_and_does_nothing_again(api: Api, db):
    body = {"role": "support", "label": f"idem-{uuid.uuid4().hex[:8]}"}
    first = await api.call("POST", "/api-keys", json=body, headers={"Idempotency-Key": "mint-1"})
    again = await api.call("POST", "/api-keys", json=body, headers={"Idempotency-Key": "mint-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    # The key itself is a secret: shown once, never kept for a replay (which answers everything else).
    assert first.json()["key"] and again.json()["key"] is None
    assert again.json() == {**first.json(), "key": None}
    assert "nodal-secret-fields" not in first.headers
    assert len(await keys_labelled(api, body["label"])) == 1  # without the key a retry mints a second one
    holding = await tables_holding(db, first.json()["key"])
    assert holding == [], f"the plaintext key is kept in {holding}"

    # The same key for a different request is refused and changes nothing.
    other = await api.call("POST", "/api-keys", json={**body, "role": "admin"}, headers={"Idempotency-Key": "mint-1"})
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    assert len(await keys_labelled(api, body["label"])) == 1
    # Keys are per API key: another caller's same Idempotency-Key is its own.
    support = first.json()["key"]
    mine = await api.call("POST", "/api-keys", key=support, json=body, headers={"Idempotency-Key": "mint-1"})
    assert mine.status_code == 403 and "idempotent-replayed" not in mine.headers
    bad = await api.call("POST", "/api-keys", json=body, headers={"Idempotency-Key": "x" * 300})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["detail"]


async def _send_crash_retry(api: Api, monkeypatch, db, method: str, path: str, body, key: str = ADMIN_KEY):
    """Send once and 'crash' before the guard's own record, then retry after the claim went stale."""
    idem, first = await send_and_crash(api, monkeypatch, method, path, body, key)
    return first, await retry_after_crash(api, db, idem, method, path, body, key)


async def test_a_crash_between_a_keys_creation_and_its_record_never_mints_a_second(api: Api, db, monkeypatch):
    """The record is written with the effect: the retry after a crash replays, it does not run again."""
    body = {"role": "support", "label": f"crash-{uuid.uuid4().hex[:8]}"}
    first, again = await _send_crash_retry(api, monkeypatch, db, "POST", "/api-keys", body)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == {**first.json(), "key": None}
    assert len(await keys_labelled(api, body["label"])) == 1
    assert await tables_holding(db, first.json()["key"]) == []


async def test_a_crash_between_a_hold_and_its_record_never_holds_twice(api: Api, db, monkeypatch):
    net = await make_network(api)
    body = {"channel": net.channel, "destination": {"postal_code": net.postal_code},
            "lines": [{"sku": net.skus[0], "qty": 3}]}
    first, again = await _send_crash_retry(api, monkeypatch, db, "POST", "/holds", body, key=net.client_key)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    async with db.engine.connect() as conn:
        held = (await conn.execute(text(
            "SELECT COALESCE(SUM(r.qty), 0) FROM reservations r JOIN checkout_holds h ON h.hold_id = r.fulfillment_id"
            " WHERE h.channel = :c AND r.status = 'held'"), {"c": net.channel})).scalar_one()
    assert held == 3, f"{held} units held for one cart"


async def test_a_crash_between_a_return_and_its_record_never_opens_a_second(api: Api, db, monkeypatch, temporal_env,
                                                                          settings):
    """A workflow-backed route: the Idempotency-Key is the Update's id, so the retry is the same Update."""
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 3)])
    await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
    await order_status(api, oid, "delivered")
    body = {"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"}
    first, again = await _send_crash_retry(api, monkeypatch, db, "POST", f"/orders/{oid}/returns", body,
                                           key=net.client_key)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["return_id"] == first.json()["return_id"]
    order = await api.ok("GET", f"/orders/{oid}")
    assert [r["return_id"] for r in order["returns"]] == [first.json()["return_id"]]


async def test_a_cancel_retried_after_a_crash_answers_as_the_first_though_the_order_has_closed(
        api: Api, db, monkeypatch, temporal_env):
    """Cancelling everything closes the order's workflow; the retry of a cancel whose answer was lost is the same
    Update, which Temporal answers from the closed workflow: the first answer again, not 'the order is closed'."""
    net = await make_network(api)
    oid = (await place(api, net, [("SKU1", 2)]))["order_id"]  # in its remorse window
    body = {"reason": "changed my mind"}
    idem, first = await send_and_crash(api, monkeypatch, "POST", f"/orders/{oid}/cancel", body, net.client_key)
    assert first.status_code == 200 and first.json()["status"] == "cancelled", first.text
    await temporal_env.client.get_workflow_handle(oid).result()  # closed
    again = await retry_after_crash(api, db, idem, "POST", f"/orders/{oid}/cancel", body, net.client_key)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "cancelled"
    # Without the key, a second cancel is a new request, and there is nothing left to cancel.
    other = await api.call("POST", f"/orders/{oid}/cancel", key=net.client_key, json=body)
    assert other.status_code == 409, other.text
    assert other.json()["detail"] == "order is closed: nothing left to cancel (the order is cancelled)"


async def test_a_run_that_lost_its_key_to_a_retry_undoes_its_work(api: Api, db, monkeypatch):
    """A request that ran past a minute lost its claim to a retry: it must not record, and its effect rolls back."""
    body = {"role": "support", "label": f"slow-{uuid.uuid4().hex[:8]}"}
    real = idempotency.record

    async def retry_took_over(request, conn, *a, **k):
        async with db.engine.begin() as other:  # what a retry's claim does to the row
            await other.execute(text("UPDATE idempotent_requests SET attempt = 'retry' WHERE idempotency_key = 'slow-1'"))
        return await real(request, conn, *a, **k)

    monkeypatch.setattr(idempotency, "record", retry_took_over)
    r = await api.call("POST", "/api-keys", json=body, headers={"Idempotency-Key": "slow-1"})
    assert r.status_code == 409 and "took over" in r.json()["detail"], r.text
    assert await keys_labelled(api, body["label"]) == []
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT attempt, status FROM idempotent_requests WHERE idempotency_key = 'slow-1'"
                                       ))).one()
    assert tuple(row) == ("retry", None)  # the retry's claim, untouched


async def test_concurrent_duplicates_place_one_order(api: Api):
    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)])
    sent = await asyncio.gather(*(api.call("POST", "/orders", key=net.client_key, json=body,
                                           headers={"Idempotency-Key": "checkout-7"}) for _ in range(4)))
    statuses = sorted(r.status_code for r in sent)
    assert statuses[0] == 201 and set(statuses) <= {201, 409}, statuses
    placed = {r.json()["order_id"] for r in sent if r.status_code == 201}
    assert len(placed) == 1
    busy = [r for r in sent if r.status_code == 409]
    assert all(r.headers["Retry-After"] == "1" for r in busy)
    replay = await api.call("POST", "/orders", key=net.client_key, json=body, headers={"Idempotency-Key": "checkout-7"})
    assert replay.status_code == 201 and replay.json() == next(r.json() for r in sent if r.status_code == 201)
    listed = await api.ok("GET", f"/orders?channel={net.channel}")
    assert [o["order_id"] for o in listed["orders"]] == list(placed)


async def test_the_rate_limit_per_key_answers_429_with_retry_after_and_changes_nothing(pg_url, db, temporal_env):
    # One token per 20 s: nothing refills while the test runs, however slow the machine (no race with the clock).
    app = create_app(settings_for(pg_url, rate_limit_per_second=0.05, rate_limit_burst=4), db=db,
                     temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal") as http:
        api = Api(http)
        label = f"limited-{uuid.uuid4().hex[:8]}"
        other_admin = (await api.ok("POST", "/api-keys", json={"role": "admin"}))["key"]  # its own bucket
        got = [await api.call("POST", "/api-keys", json={"role": "support", "label": label}) for _ in range(3)]
        # The scheme is case-insensitive: a lower-case "bearer" is the same key and the same bucket.
        got += [await api.call("POST", "/api-keys", key=None, headers={"Authorization": f"bearer {ADMIN_KEY}"},
                               json={"role": "support", "label": label}) for _ in range(2)]
        assert [r.status_code for r in got] == [201, 201, 201, 429, 429]
        assert int(got[3].headers["Retry-After"]) >= 1 and "rate limit" in got[3].json()["detail"]
        assert len(await keys_labelled(api, label, other_admin)) == 3  # the refused ones minted nothing
        # Another key has its own bucket.
        assert (await api.call("GET", "/api-keys", key="not-a-key")).status_code == 401


async def test_a_5000_line_order_is_accepted_and_a_20_mb_body_refused(api: Api, db):
    net = await make_network(api, stock={"DC-N": {"SKU1": 6000}})
    big = order_body(net, [("SKU1", 1)] * 5000, policy={"max_splits": 0})
    size = len(json.dumps(big))
    placed = await api.call("POST", "/orders", key=net.client_key, json=big)
    assert placed.status_code == 201, placed.text[:300]
    # Promised within the placement wait (8.7 s measured over 150 national nodes: 2.8 s of it routing),
    # and taken whole: every line is on the order.
    assert placed.json()["status"] == "awaiting_release", placed.json()
    async with db.engine.connect() as conn:
        taken = (await conn.execute(text("SELECT jsonb_array_length(intake -> 'lines') FROM orders"
                                         " WHERE order_id = :o"), {"o": placed.json()["order_id"]})).scalar_one()
    assert taken == 5000
    assert size < 8 * 1024 * 1024

    huge = b'{"channel": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    r = await api.call("POST", "/orders", key=net.client_key, content=huge,
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    # Without a declared length (chunked), the body is cut off at the limit all the same.
    async def chunks():
        for _ in range(20):
            yield b"x" * (1024 * 1024)
    r = await api.call("POST", "/orders", key=net.client_key, content=chunks(),
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert (await api.call("POST", "/orders", key=ADMIN_KEY, json={})).status_code == 422



async def test_an_order_beyond_the_line_limit_is_refused_plainly(api: Api, db, settings):
    net = await make_network(api)
    body = order_body(net, [("SKU1", 1)] * (settings.max_order_lines + 1))
    r = await api.call("POST", "/orders", key=net.client_key, json=body)
    assert r.status_code == 422 and r.json()["detail"] == (
        f"an order may have at most {settings.max_order_lines} lines (NODAL_MAX_ORDER_LINES); this one has "
        f"{settings.max_order_lines + 1}: split it into several orders")
    assert len(r.content) < 500  # the reason, not the order echoed back
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT COUNT(*) FROM orders WHERE channel = :c"),
                                   {"c": net.channel})).scalar_one() == 0


async def test_requests_without_a_good_key_are_limited_by_address_before_any_lookup(pg_url, db, temporal_env):
    """No key, or random ones, from one address: limited per address before authentication, a failed key
    costing more than a request; a good key from another address is not slowed."""
    app = create_app(settings_for(pg_url, rate_limit_per_address=5, rate_limit_address_burst=10,
                                  rate_limit_bad_key_cost=5), db=db, temporal=temporal_env.client)
    app.state.db, app.state.temporal = db, temporal_env.client
    flood = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    good = httpx.ASGITransport(app=app, client=("198.51.100.2", 5000))
    async with httpx.AsyncClient(transport=flood, base_url="http://nodal") as attacker, \
            httpx.AsyncClient(transport=good, base_url="http://nodal") as customer:
        statuses = [(await attacker.get("/nodes", headers={"Authorization": f"Bearer random-{i}"})).status_code
                    for i in range(6)]
        assert statuses[:2] == [401, 401] and 429 in statuses, statuses  # 2 bad keys spend the burst of 10
        nokey = await attacker.get("/nodes")
        assert nokey.status_code == 429 and "address" in nokey.json()["detail"], nokey.text
        assert int(nokey.headers["Retry-After"]) >= 1
        ok = await customer.get("/nodes", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert ok.status_code == 200
