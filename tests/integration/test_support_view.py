"""What support staff read in the Temporal UI and CLI: each order and fulfillment tells its story in its current
details (status, nodes, what it waits for, the next deadline), updated at every step, and says what it is in its
summary (the workflow list)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, make_network, temporal_cli
from tests.integration.flow import fulfillment, order_status, place, release, walk

pytestmark = pytest.mark.integration


async def story(temporal_env, workflow_id: str) -> str:
    """The current details, as `temporal workflow metadata` shows them."""
    code, out = await temporal_cli(temporal_env, "workflow", "metadata", "--workflow-id", workflow_id)
    assert code == 0, out
    return out["queryResult"][0].get("currentDetails", "")


async def test_an_orders_story_follows_its_life_in_the_temporal_cli(api: Api, temporal_env, settings):
    net = await make_network(api)
    dc = net.node("DC-N")
    body_id = "story-1"
    oid = (await place(api, net, [("SKU1", 2)], external_id=body_id))["order_id"]
    described = await temporal_env.client.get_workflow_handle(oid).describe()
    assert await described.static_summary() == f"Order {body_id} · {net.channel} · 1 line(s)"

    text = await story(temporal_env, oid)
    assert text.startswith("**Awaiting release** · 2 unit(s) in 1 line(s)"), text
    assert "Waiting for: the remorse window to end at" in text and f"- {oid}-F1 at {dc}: reserved" in text
    assert "Next deadline: release to the nodes by" in text

    await release(api, temporal_env, oid, settings)
    f = await fulfillment(api, oid, dc)
    text = await story(temporal_env, oid)
    assert text.startswith("**Released**") and f"Waiting for: {dc} to accept {f['fulfillment_id']}" in text, text
    assert f"Next deadline: {dc} to accept by" in text and f"- {f['fulfillment_id']} at {dc}: released, accept by" in text
    own = await story(temporal_env, f["fulfillment_id"])
    assert own.startswith(f"**Released** at {dc} · 2 unit(s) in 1 line(s) · order {oid}"), own
    # Its next deadline is the earlier of acceptance (released + NODAL_ACCEPT_TIMEOUT) and the ship-by (the node's
    # 16:00 cutoff): which one depends on the time of day the test runs.
    assert f"Waiting for: {dc} to accept" in own
    assert f"Next deadline: acceptance deadline at {dc} by" in own or "Next deadline: ship-by of the promise by" in own

    partner = await api.key("partner", node_id=dc)
    await walk(api, f, partner, upto="ship")
    own = await story(temporal_env, f["fulfillment_id"])
    assert own.startswith(f"**Shipped** at {dc}") and "Waiting for: delivery (" in own, own
    await api.ok("POST", f"/fulfillments/{f['fulfillment_id']}/deliver", key=partner)
    await order_status(api, oid, "delivered")
    text = await story(temporal_env, oid)
    # Delivered but still running: the story says why, and until when.
    assert text.startswith("**Delivered**") and "Waiting for: returns until" in text, text
    assert "the return window keeps a delivered order open" in text
    assert f"- {f['fulfillment_id']} at {dc}: delivered" in text
    assert (await story(temporal_env, f["fulfillment_id"])).startswith(f"**Delivered** at {dc}")
