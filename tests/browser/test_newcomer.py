"""A newcomer's first hour: `nodal dev` in a terminal, an order in the Temporal UI as support staff read it, the
API's docs with no network, Ctrl-C. Screenshots of each page are kept (tests/browser/conftest.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from playwright.async_api import async_playwright

from launcher.skipping import temporal_binary
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, local_only, screenshots

pytestmark = pytest.mark.integration


def test_the_terminal_shows_where_everything_is_not_log_lines(dev_stack):
    screen = dev_stack.screen()
    for shown in ("Nodal is up", f"API          {dev_stack.api}", "Temporal UI", "admin key    " + dev_stack.admin_key,
                  "windows      remorse 30m · accept 2h · return 30d",
                  "--demo puts orders and partners to work", "Orders by status", "Latest events"):
        assert shown in screen, f"{shown!r} not on the terminal:\n{screen[-2500:]}"
    for noise in ('{"event"', "initdb", "XDG_RUNTIME_DIR", "Traceback"):
        assert noise not in screen, f"{noise!r} on the terminal:\n{screen[-2500:]}"
    log = (dev_stack.home / "logs" / "nodal.log").read_text()
    assert all(json.loads(line) for line in log.splitlines()), "the log file holds JSON lines"


async def _place(dev_stack, external_id: str) -> str:
    async with httpx.AsyncClient(base_url=dev_stack.api, headers={"Authorization": f"Bearer {dev_stack.admin_key}"},
                                 timeout=60) as http:
        r = await http.post("/orders", json={
            "external_id": external_id, "channel": "web", "customer": {"id": "c-newcomer"},
            "lines": [{"sku": "SKU-TEE-1", "qty": 2, "unit_price": "19.90",
                       "delivery": {"method": "ship_standard", "address": {"postal_code": "10001"}}}]})
    assert r.status_code == 201 and r.json()["status"] == "awaiting_release", r.text
    return r.json()["order_id"]


async def test_support_reads_an_orders_story_in_the_temporal_ui(dev_stack):
    oid = await _place(dev_stack, "newcomer-1")
    shots = screenshots()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{dev_stack.ui}/namespaces/default/workflows/{oid}")
            await page.get_by_text("User Metadata", exact=True).click()
            # The UI renders markdown details in sandboxed frames of their own.
            await page.frame_locator("iframe").last.get_by_text("Waiting for: the remorse window to end at") \
                .wait_for(timeout=30_000)
            body = await page.inner_text("body") + "".join([await f.inner_text("body") for f in page.frames[1:]])
            assert "Order newcomer-1 · web · 1 line(s)" in body, body[-2000:]  # the summary
            assert "Awaiting release" in body and "Next deadline: release to the nodes by" in body, body[-2000:]
            assert f"{oid}-F1 at DC-EAST: reserved" in body, body[-2000:]
            await page.screenshot(path=str(shots / "order-story.png"))
            await page.get_by_text("Event History", exact=False).first.click()
            await page.get_by_text("reserve 2 unit(s) at DC-EAST").wait_for(timeout=30_000)
            assert "remorse window: modify or cancel until then" in await page.inner_text("body")
            await page.screenshot(path=str(shots / "order-history.png"))
            # The list as README's saved view has it: orders, with their status, risk, promise and nodes.
            await page.set_viewport_size({"width": 1800, "height": 700})
            await page.goto(f'{dev_stack.ui}/namespaces/default/workflows?query=WorkflowType%3D%22Order%22')
            await page.get_by_text(oid).first.wait_for(timeout=30_000)
            await page.get_by_label("Configure Columns").click()
            for column in ("Run ID", "End"):
                await page.get_by_label(f"Remove {column} column").click()
            for column in ("OrderStatus", "AtRisk", "PromisedBy", "FulfillmentNodes"):
                await page.get_by_label(f"Add {column} column").click()
            await page.get_by_label("Close Workflows Table configuration").click()
            await page.get_by_text("Configure Workflows Table").wait_for(state="hidden")
            row = page.get_by_role("row").filter(has_text=oid)
            await row.get_by_text("awaiting_release").wait_for(timeout=30_000)
            await page.screenshot(path=str(shots / "order-list.png"))
        finally:
            await browser.close()
    # The same story from the CLI (the package's binary, as `temporal` on the PATH of the README's venv).
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), "workflow", "metadata", "--workflow-id", oid, "--address", dev_stack.temporal, "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = json.loads((await proc.communicate())[0])
    assert out["queryResult"][0]["currentDetails"].startswith("**Awaiting release** · 2 unit(s) in 1 line(s)")


async def test_the_api_docs_work_with_no_network(dev_stack):
    """Swagger UI's assets come from the package: with every request beyond this machine refused, /docs lists
    the operations."""
    refused: list[str] = []

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.route("**/*", local_only(refused))
            await page.goto(f"{dev_stack.api}/docs")
            await page.get_by_text("Place an order (idempotent by channel + external_id)").wait_for(timeout=30_000)
            await page.screenshot(path=str(screenshots() / "api-docs-offline.png"))
        finally:
            await browser.close()
    assert refused == [], refused


async def test_the_control_tower_is_served_by_nodal_dev(dev_stack):
    """The staff's page on the stack a newcomer runs: sign in with the printed admin key, the demo network on its
    map, the orders needing attention (none yet: nothing is late on a fresh stack)."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{dev_stack.api}/console/network")
            await page.get_by_label("API key").fill(dev_stack.admin_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.locator("#node-DC-EAST").wait_for(timeout=30_000)
            assert await page.locator("#nodes tbody tr").count() == 12
            await page.wait_for_function("() => window.Chart && Chart.getChart('map') !== undefined")
            await page.screenshot(path=str(screenshots() / "console-dev-network.png"), full_page=True)
            await page.get_by_role("link", name="Needs attention").click()
            await page.get_by_role("heading", name="Orders needing attention").wait_for(timeout=30_000)
        finally:
            await browser.close()


def test_ctrl_c_stops_everything_and_says_so(dev_stack):
    assert dev_stack.stop() == 0, dev_stack.screen()[-2000:]
    screen = dev_stack.screen()
    assert "stopping…" in screen and screen.rstrip().endswith("stopped."), screen[-1500:]
