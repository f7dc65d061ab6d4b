"""Orders that live long (backordered for weeks, held to a date): their history stays small (continue-as-new
with the whole book), stock changes in a burst wake them once, and they still finish."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Optional

import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from tests.integration.conftest import eventually, make_network, own_stack, retry_after_crash, send_and_crash
from tests.integration.flow import order_status, release, released_to, walk

pytestmark = pytest.mark.integration


async def histories_of(client, order_id: str) -> list:
    """The histories of the order's runs, the current run's first."""
    out, run_id = [], None
    while True:
        history = await client.get_workflow_handle(order_id, run_id=run_id).fetch_history()
        out.append(history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            return out


async def runs_of(client, order_id: str) -> int:
    return len(await histories_of(client, order_id))


async def test_a_backorder_that_keeps_changing_continues_as_new_and_finishes(temporal_env, db, pg_url):
    """A small history limit (60 events) stands for a backorder that waited weeks: every change of its purchase
    order re-promises it, the history grows, the order continues as new with its whole book, and still finishes."""
    async with own_stack(temporal_env, db, pg_url, "nodal-long", order_history_limit=60) as api:
        net, supply, eta, handle, before = await _backordered_from_supply(api, temporal_env)
        oid, node, sku = handle.id, supply["node_id"], supply["sku"]
        promised = before["lines"][0]["promised_by"]
        for day in range(1, 16):  # the supplier moves its date, again and again
            due = eta + timedelta(weeks=day)
            r = await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": due.isoformat()}])
            assert r["orders_repromised"] == 1, r
            promised = await eventually(lambda: _repromised(api, oid, due, promised), what=f"re-promise {day}")
            if await runs_of(temporal_env.client, oid) > 1:
                break
        assert await runs_of(temporal_env.client, oid) > 1, "the order never continued as new"
        order = await api.ok("GET", f"/orders/{oid}")
        assert order["status"] == "backordered" and "continued_as_new" in [t["event"] for t in order["timeline"]]
        assert [(l["line_id"], l["qty"]) for l in order["lines"]] == [(l["line_id"], l["qty"]) for l in before["lines"]]
        assert order["lines"][0]["promised_by"] > before["lines"][0]["promised_by"], [(t["event"], t["detail"]) for t in order["timeline"] if t["event"] in ("repromised", "routing_decision")][-6:]
        state = await eventually(lambda: _query(handle), what="the continued run to answer")
        assert [l["qty"] for l in state["lines"]] == [3] and state["status"] == "backordered"
        # The goods arrive: the continued order sources the units and finishes as any other.
        await api.ok("POST", "/inventory/adjustments", json=[
            {"event_id": f"{net.prefix}-GR1", "node_id": node, "sku": sku, "delta": 5, "reason": "goods receipt"}])

        async def sourced():
            o = await api.ok("GET", f"/orders/{oid}")
            return o["fulfillments"] or None
        key = await api.key("partner", node_id=node)
        for f in await eventually(sourced, what="the backorder sourced after continue-as-new"):
            await walk(api, f, key)
        await order_status(api, oid, "delivered")


class SupplierMovesMidTask(Interceptor):
    """The supplier moves its date again while the workflow task that re-promised the order from the last move is
    still running: once the task's mirror has written, before the task completes (continuing as new, history limit
    1). Temporal refuses a completion that closes the run while a signal waits, and runs the task again: the
    retry re-promises from the new date, after the read model took the first attempt's."""

    def __init__(self) -> None:
        self.move: Optional[Callable[[], Awaitable[None]]] = None

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        hook = self

        class Run(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                out = await self.next.execute_activity(input)
                if activity.info().activity_type == "read_model.record_order" and hook.move and any(
                        t.event == "routing_decision" and t.detail.get("reason") == "supply_changed"
                        for t in input.args[0].timeline):
                    move, hook.move = hook.move, None
                    await move()
                return out

        return Run(next)


async def test_a_re_promise_that_temporal_ran_again_reaches_the_read_model_as_the_retry_made_it(temporal_env, db,
                                                                                                pg_url):
    hook = SupplierMovesMidTask()
    async with own_stack(temporal_env, db, pg_url, "nodal-long-retried", interceptors=[hook],
                         order_history_limit=1) as api:
        net, supply, eta, handle, before = await _backordered_from_supply(api, temporal_env)
        oid = handle.id
        last = eta + timedelta(weeks=2)

        async def move_again() -> None:
            await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": last.isoformat()}])
            await handle.signal("supply_changed")  # as the API does, were the order not woken a moment ago

        hook.move = move_again
        await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": (eta + timedelta(weeks=1)).isoformat()}])
        await eventually(lambda: _repromised(api, oid, last, before["lines"][0]["promised_by"]), timeout=20,
                         what="the read model's line promised from the last date")
        assert hook.move is None, "the supplier never moved mid-task"
        retried = [e for h in await histories_of(temporal_env.client, oid) for e in h.events
                   if e.HasField("workflow_task_failed_event_attributes")]
        assert retried, "Temporal did not run the task again"
        # The read model is the workflow's own account: header, line and timeline as the retry made them.
        state = await eventually(lambda: _query(handle), what="the order to answer")
        order = await api.ok("GET", f"/orders/{oid}")
        at = datetime.fromisoformat
        assert at(order["promised_by"]) == at(state["promised_by"]) == at(order["lines"][0]["promised_by"])
        # Every move of the promise on the timeline starts where the one before ended: none the retry undid.
        moves = [(t["detail"]["old"], t["detail"]["new"]) for t in order["timeline"] if t["event"] == "repromised"]
        assert len(moves) > 1 and all(at(old) == at(was) for (old, _), (_, was) in zip(moves[1:], moves)), moves
        assert at(moves[-1][1]) == at(state["promised_by"]), moves
        # Subscribers heard the discarded attempt's move, and then the retry's under an id of its own: the last
        # order.repromised event they get is the promise the order keeps.
        async with db.engine.connect() as conn:
            told = (await conn.execute(text("SELECT id, data->>'new' FROM events WHERE order_id = :o"
                                            " AND type = 'order.repromised' ORDER BY seq"), {"o": oid})).all()
        assert at(told[-1][1]) == at(state["promised_by"]), told


async def test_a_retried_return_is_the_same_return_after_the_order_continued_as_new(temporal_env, db, pg_url,
                                                                                    monkeypatch):
    """Temporal runs an Update id once per run: the order's book carries the Idempotency-Keyed Updates it applied
    into the next run, so a retry after a crash and a continue-as-new opens no second return."""
    # A limit of one event continues the order at every wake, so the return's own wake continues it whatever the
    # history's length: how milestones and the Update batch into workflow tasks varies with the machine's load.
    async with own_stack(temporal_env, db, pg_url, "nodal-long-idem", order_history_limit=1) as api:
        net = await make_network(api)
        oid, f = await released_to(api, temporal_env, api.settings, net, [("SKU1", 3)])
        await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
        await order_status(api, oid, "delivered")
        # The return must wake a run that waits in its return window: one that takes it in its first workflow task
        # (sent while the last milestone's continue-as-new is under way) has nothing left to wake it.
        await eventually(lambda: _waiting_on_a_timer(temporal_env.client, oid), what="the order's return window")
        body = {"lines": [{"line_id": "L1", "qty": 1}], "reason": "too small"}
        idem, first = await send_and_crash(api, monkeypatch, "POST", f"/orders/{oid}/returns", body, net.client_key)
        assert first.status_code == 201, first.text
        # The retry must reach a run that never saw the return's Update id: only the carried book knows it.
        await eventually(lambda: _update_left_behind(temporal_env.client, oid, "request_return"),
                         what="the run that took the return to continue as new")
        again = await retry_after_crash(api, db, idem, "POST", f"/orders/{oid}/returns", body, net.client_key)
        assert again.status_code == 201, again.text
        assert again.json()["return_id"] == first.json()["return_id"]
        order = await api.ok("GET", f"/orders/{oid}")
        assert [r["return_id"] for r in order["returns"]] == [first.json()["return_id"]]


async def _waiting_on_a_timer(client, order_id: str) -> bool:
    history = await client.get_workflow_handle(order_id).fetch_history()
    return history.events[-1].HasField("timer_started_event_attributes")


async def _update_left_behind(client, order_id: str, update: str) -> bool:
    """Whether an earlier run of the order accepted an Update of this name and the current run has none."""
    took = [any(e.HasField("workflow_execution_update_accepted_event_attributes")
                and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name == update
                for e in history.events) for history in await histories_of(client, order_id)]
    return not took[0] and any(took[1:])


async def _repromised(api, order_id: str, eta: datetime, before: str) -> Optional[str]:
    """The order's new promise once it re-promised from supply due at ``eta``: later than before, and not before
    the goods arrive. Not a count of decisions: a change that lands while the order re-promises from the one
    before is taken in that re-promise (a wake already pending, or a workflow task Temporal retries re-reads the
    supply after the read model showed the first attempt's decision)."""
    o = await api.ok("GET", f"/orders/{order_id}")
    now = o["lines"][0]["promised_by"]
    if now is None or datetime.fromisoformat(now) <= datetime.fromisoformat(before):
        return None
    return now if datetime.fromisoformat(now) >= eta else None


async def test_a_burst_of_stock_changes_wakes_a_backorder_once(api, temporal_env, settings):
    net = await make_network(api, stock={"DC-N": {"SKU1": 1}, "DC-S": {}})
    node, sku = net.node("DC-N"), net.skus[0]
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201, json=await _body(net, 3)))["order_id"]
    await release(api, temporal_env, oid, settings)
    await order_status(api, oid, "backordered")
    answers = await asyncio.gather(*(api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net.prefix}-GR{i}", "node_id": node, "sku": sku, "delta": 1, "reason": "receipt"}])
        for i in range(12)))
    assert len(answers) == 12
    order = await order_status(api, oid, "released")

    async def tried():
        o = await api.ok("GET", f"/orders/{oid}")
        return [t for t in o["timeline"] if t["event"] == "routing_decision"
                and t["detail"]["reason"] == "supply_changed"] or None
    decisions = await eventually(tried, what="the wake")
    await asyncio.sleep(3)  # any second wake would have come by now
    order = await api.ok("GET", f"/orders/{oid}")
    woken = [t for t in order["timeline"] if t["event"] == "routing_decision" and t["detail"]["reason"] == "supply_changed"]
    assert len(woken) == 1 and decisions and woken[0]["detail"]["feasible"], woken
    assert sorted(sum(l["qty"] for l in f["lines"]) for f in order["fulfillments"]) == [1, 2]


async def _backordered_from_supply(api, temporal_env) -> tuple:
    """Nothing on hand, a purchase order a month out: an order of 3 taken as a backorder dated from it, past its
    remorse window. Returns the network, the purchase order, its ETA, the order's handle and the order."""
    net = await make_network(api, stock={"DC-N": {}, "DC-S": {}})
    supply = {"supply_id": f"{net.prefix}-PO1", "node_id": net.node("DC-N"), "sku": net.skus[0], "qty": 10}
    eta = datetime.now(timezone.utc) + timedelta(days=30)
    await api.ok("POST", "/inventory/supply", json=[{**supply, "eta": eta.isoformat()}])
    oid = (await api.ok("POST", "/orders", key=net.client_key, expect=201, json=await _body(net, 3)))["order_id"]
    handle = temporal_env.client.get_workflow_handle(oid)
    await temporal_env.fast_forward(handle, api.settings.remorse_window)
    return net, supply, eta, handle, await order_status(api, oid, "backordered")


async def _body(net, qty: int) -> dict:
    from tests.integration.conftest import order_body
    return order_body(net, [("SKU1", qty)])


async def _query(handle):
    from temporalio.service import RPCError
    try:
        return await handle.query("state")
    except RPCError:  # the new run has not taken its first task yet
        return None
