"""The control tower (/console): staff sign in with a key, see the orders needing attention and act on them through
the public API, read the network, the KPIs and one order's life. The browser test drives Debian's chromium with
Playwright against the API served by uvicorn on the test stack; screenshots of each page are kept, and axe-core
checks each page against WCAG 2 A and AA."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import uvicorn

from api.app import create_app
from nodal.ports import free_port
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, local_only, browser_ready, screenshots  # noqa: F401 (a fixture)
from tests.integration.conftest import ADMIN_KEY, Api, eventually, make_network
from tests.integration.flow import released_to, walk

pytestmark = pytest.mark.integration


async def test_only_staff_sign_in_and_the_cookie_opens_only_the_console_and_htmx(api: Api):
    net = await make_network(api)
    c = api.client
    r = await c.get("/console/attention")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?then=/console/attention"
    partner = await api.key("partner", node_id=net.node("DC-N"))
    for key, why in ((partner, "not a staff key"), (net.client_key, "not a staff key"), ("nope-" * 5, "unknown")):
        r = await c.post("/console/login", data={"key": key, "then": "/console/network"})
        assert r.status_code == 401 and why in r.text, r.text[-500:]
        assert "nodal_console" not in r.headers.get("set-cookie", "")
    # Only a path of the console is a place to go after signing in.
    made = await api.ok("POST", "/api-keys", json={"role": "support"})
    support, support_id = made["key"], made["key_id"]
    r = await c.post("/console/login", data={"key": support, "then": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    jar = {"nodal_console": support}
    r = await c.get("/console/attention", cookies=jar)
    assert r.status_code == 200 and "Orders needing attention" in r.text
    # The cookie is not a key for the API: a cross-site form cannot use it; htmx's requests (HX-Request) can.
    assert (await c.get("/orders", cookies=jar)).status_code == 401
    assert (await c.get("/orders", cookies=jar, headers={"HX-Request": "true"})).status_code == 200
    r = await c.post("/console/logout", cookies=jar)
    assert r.status_code == 303 and 'nodal_console=""' in r.headers["set-cookie"]
    # A revoked key signs nobody in any more (the revocation reaches this process's key cache at once).
    await api.ok("DELETE", f"/api-keys/{support_id}")
    r = await c.get("/console/attention", cookies=jar)
    assert r.status_code == 303


async def test_pages_render_what_the_read_model_holds(api: Api, temporal_env, settings):
    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    jar = {"nodal_console": ADMIN_KEY}
    order = (await api.client.get(f"/console/orders/{oid}", cookies=jar)).text
    assert f["fulfillment_id"] in order and "Routing decisions" in order and "chosen" in order
    assert "fulfillment_released" in order and f"/workflows/{oid}" in order
    found = await api.client.get(f"/console/search?q={oid}", cookies=jar)
    assert found.headers["location"] == f"/console/orders/{oid}"
    missing = await api.client.get("/console/orders/ORD-NOPE", cookies=jar)
    assert missing.status_code == 404 and "No order ORD-NOPE" in missing.text
    network = (await api.client.get("/console/network", cookies=jar)).text
    assert net.node("DC-N") in network and "Load today" in network
    assert (await api.client.get("/console/network?from=2026-02-02&to=2026-01-01", cookies=jar)).status_code == 422
    kpis = (await api.client.get(f"/console/kpis?channel={net.channel}", cookies=jar)).text
    assert "Fulfillment rate (complete, on time)" in kpis and '"orders": 1' in kpis.replace("&#34;", '"')
    for asset in ("vendor/htmx.min.js", "vendor/json-enc.js", "vendor/chart.umd.min.js", "console.css", "console.js"):
        assert (await api.client.get(f"/console/static/{asset}")).status_code == 200


async def _axe_problems(page, name: str) -> list[str]:
    """What axe-core (the accessibility engine, run in the page) finds against WCAG 2 A and AA, serious or worse."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]},
                                             "resultTypes": ["violations"]})
    return [f"{name}: {v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes'][:3]]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.fixture
async def served(temporal_env, db, settings, worker):
    """The API over real HTTP (uvicorn) on the test stack, for the browser."""
    app = create_app(settings, db=db, temporal=temporal_env.client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_support_sees_an_at_risk_order_and_reorchestrates_it_from_the_page(
        api: Api, temporal_env, settings, served, browser_ready):
    from playwright.async_api import async_playwright, expect

    net = await make_network(api)
    oid, f = await released_to(api, temporal_env, settings, net, [("SKU1", 1)])
    dc_n, dc_s = net.node("DC-N"), net.node("DC-S")
    partner = await api.key("partner", node_id=dc_n)
    await walk(api, f, partner, upto="accept")
    # The node's clock passes the ship-by with the parcel not even picked: the order is at risk.
    child = temporal_env.client.get_workflow_handle(f["fulfillment_id"])
    await temporal_env.fast_forward(child, datetime.fromisoformat(f["ship_by"]) - datetime.now(timezone.utc)
                                    + timedelta(minutes=5))
    await eventually(lambda: _at_risk(api, oid), what="order at risk")
    support = await api.key("support")
    shots = screenshots()
    refused: list[str] = []

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.route("**/*", local_only(refused))
            await page.goto(f"{served}/console")
            await expect(page.get_by_role("heading", name="Sign in to the control tower")).to_be_visible()
            await page.screenshot(path=str(shots / "console-login.png"))
            problems = await _axe_problems(page, "login")
            await page.get_by_label("API key").fill(support)
            await page.get_by_role("button", name="Sign in").click()
            row = page.locator(f"#row-{oid}")
            await expect(row).to_contain_text("at risk")
            await expect(row).to_contain_text(f"{f['fulfillment_id']} · {dc_n} · accepted")
            await page.screenshot(path=str(shots / "console-attention.png"), full_page=True)
            problems += await _axe_problems(page, "attention")
            # Move the late fulfillment to the far DC, from the row.
            await row.get_by_label("Fulfillment to move").select_option(f["fulfillment_id"])
            await row.get_by_label("To node").select_option(dc_s)
            await row.get_by_role("button", name="Reorchestrate").click()
            await expect(page.locator("#flash")).to_contain_text(f"Reorchestrated {oid}")
            moved = await eventually(lambda: _moved(api, oid, dc_s), what="fulfillment at DC-S")
            # The table refreshes after the action: the new fulfillment at DC-S is not late, so the order no
            # longer needs attention.
            await expect(page.locator(f"#row-{oid}")).to_have_count(0, timeout=30_000)
            await page.screenshot(path=str(shots / "console-reorchestrated.png"), full_page=True)
            # The order's life: the move is on its timeline, the new decision lists its candidates.
            await page.get_by_label("Order id or channel order number").fill(oid)
            await page.get_by_role("button", name="Find").click()
            await expect(page.locator("#timeline")).to_contain_text("reorchestrate")
            await expect(page.locator("#fulfillments")).to_contain_text(moved["fulfillment_id"])
            await expect(page.locator("#fulfillments")).to_contain_text(dc_s)
            await page.screenshot(path=str(shots / "console-order.png"), full_page=True)
            problems += await _axe_problems(page, "order")
            await page.get_by_role("link", name="Network").click()
            await expect(page.locator(f"#node-{dc_s}")).to_be_visible()
            await page.wait_for_function("() => window.Chart && Chart.getChart('map') !== undefined")
            await page.screenshot(path=str(shots / "console-network.png"), full_page=True)
            problems += await _axe_problems(page, "network")
            # A support key may not switch a node off: the page says why and the switch stays as it was.
            switch = page.get_by_label(f"{dc_s} takes new work")
            await switch.click()
            await expect(page.locator("#flash")).to_contain_text("403")
            await expect(switch).to_be_checked()
            await page.get_by_role("link", name="KPIs").click()
            await page.get_by_label("Channel", exact=True).select_option(net.channel)
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("#tiles")).to_contain_text("Orders")
            await page.wait_for_function("() => window.Chart && Chart.getChart('c-rates') !== undefined")
            await page.screenshot(path=str(shots / "console-kpis.png"), full_page=True)
            problems += await _axe_problems(page, "kpis")
        finally:
            await browser.close()
    assert refused == [], refused
    assert problems == [], "\n".join(problems)  # accessible: no serious WCAG 2 A/AA problem on any page


async def _at_risk(api: Api, oid: str):
    o = await api.ok("GET", f"/orders/{oid}")
    return o["at_risk"] or None


async def _moved(api: Api, oid: str, node: str):
    o = await api.ok("GET", f"/orders/{oid}")
    return next((f for f in o["fulfillments"] if f["node_id"] == node and f["status"] == "released"), None)


async def test_bad_requests_change_nothing(api: Api):
    jar = {"nodal_console": ADMIN_KEY}
    r = await api.client.get("/console/kpis?from=not-a-day", cookies=jar)
    assert r.status_code == 422
    r = await api.client.post("/console/login", data={"key": "x" * 201})
    assert r.status_code == 422
    async with httpx.AsyncClient(transport=api.client._transport, base_url="http://nodal") as c:
        assert (await c.get("/console/search?q=" + "x" * 201, cookies=jar)).status_code == 422


async def test_the_attention_list_says_why_and_leaves_the_rest_out(api: Api, db, settings):
    """Written as the workflows leave the read model: stuck past the norm, waiting for support after the reroute
    limit, on a payment hold (and one whose hold was released), and orders that need nothing."""
    import json
    import uuid

    from sqlalchemy import text

    from api.console import attention
    from tests.integration.test_kpis import _order

    ch = f"att-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    stuck, support, hold, released, fine, done = (f"{ch}-{x}" for x in ("stuck", "support", "hold", "released",
                                                                        "fine", "done"))

    async def event(conn, oid, n, name, detail, at):
        await conn.execute(text("INSERT INTO timeline_events (order_id, key, at, event, detail) VALUES (:o, :k, :at, :e,"
                                " CAST(:d AS jsonb))"), {"o": oid, "k": f"o{n}", "at": at, "e": name,
                                                          "d": json.dumps(detail)})
    async with db.engine.begin() as conn:
        await _order(conn, ch, stuck, now - timedelta(days=2), "released")
        await _order(conn, ch, support, now - timedelta(hours=1), "backordered")
        await event(conn, support, 1, "backordered", {"reason": "reroute limit reached: waiting for support"}, now)
        await _order(conn, ch, hold, now - timedelta(minutes=5), "released")
        await event(conn, hold, 1, "payment_hold", {"until": (now + timedelta(days=3)).isoformat()}, now)
        await _order(conn, ch, released, now - timedelta(minutes=5), "released")
        await event(conn, released, 1, "payment_hold", {"until": now.isoformat()}, now - timedelta(minutes=2))
        await event(conn, released, 2, "payment_hold_released", {}, now - timedelta(minutes=1))
        await _order(conn, ch, fine, now - timedelta(minutes=5), "awaiting_release")
        await _order(conn, ch, done, now - timedelta(days=9), "delivered")
    async with db.engine.connect() as conn:
        items = {i["order_id"]: [kind for kind, _ in i["reasons"]] for i in await attention(conn, settings, ch)}
    assert items == {stuck: ["stuck"], support: ["support"], hold: ["payment_hold"]}
    r = await api.client.get(f"/console/attention?channel={ch}", cookies={"nodal_console": ADMIN_KEY})
    assert "released for 2.0 d" in r.text and "waiting for support: reroute limit reached" in r.text
    assert "Retry payment" in r.text and r.text.count("Retry payment") == 1
