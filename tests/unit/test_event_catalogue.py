"""The event catalogue: patterns, what the read model's writes make of timeline entries and status changes, and the
OpenAPI's webhooks documenting every type with an example that fits its schema."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from api.event_docs import ENVELOPES
from events.catalogue import TYPES, from_status, from_timeline, matches, valid_pattern
from events.feeds import Feed
from models.status import OrderStatus

AT = datetime(2026, 12, 7, tzinfo=timezone.utc)


def test_patterns():
    assert all(valid_pattern(p) for p in ("*", "order.*", "fulfillment.shipped", "availability.changed"))
    assert not any(valid_pattern(p) for p in ("order", "orders.*", "order.shipped_", "*.shipped", ""))
    assert matches("order.*", "order.shipped") and not matches("order.*", "fulfillment.shipped")
    assert matches("*", "return.received") and matches("return.received", "return.received")


def test_timeline_entries_become_events_once_by_key():
    entries = [SimpleNamespace(key="o3", at=AT, event="released", detail={"fulfillments": ["F1"]}),
               SimpleNamespace(key="o4", at=AT, event="routing_decision", detail={}),  # internal: no event
               SimpleNamespace(key="O-F1:2", at=AT, event="fulfillment_shipped",
                               detail={"fulfillment_id": "O-F1", "node_id": "DC", "tracking": "T"}),
               SimpleNamespace(key="o5", at=AT, event="lines_cancelled", detail={"lines": []})]
    out = from_timeline("O", entries)
    assert [(e.id, e.type, e.node_id) for e in out] == [
        ("O.o3", "order.released", None), ("O.O-F1:2", "fulfillment.shipped", "DC"), ("O.o5", "order.cancelled", None)]
    assert out[2].data["partial"] is True and all(e.stream == "O" for e in out)


@pytest.mark.parametrize("before,after,expected", [
    ("received", OrderStatus.awaiting_release, "order.promised"),
    (None, OrderStatus.awaiting_approval, "order.promised"),
    ("awaiting_approval", OrderStatus.awaiting_release, None),  # approved: promised once, at placement
    ("released", OrderStatus.partially_shipped, "order.shipped"),
    ("partially_shipped", OrderStatus.shipped, "order.shipped"),
    ("shipped", OrderStatus.shipped, None),  # the same status again: nothing
    ("shipped", OrderStatus.delivered, "order.delivered"),
    ("awaiting_release", OrderStatus.released, None),  # the timeline's "released" says it
    ("delivered", OrderStatus.partially_returned, "order.returned"),
    ("awaiting_release", OrderStatus.cancelled, "order.cancelled"),
])
def test_status_changes(before, after, expected):
    out = from_status("O", 7, before, after, AT)
    assert [e.type for e in out] == ([expected] if expected else [])
    if out:
        assert out[0].id == "O.v7" and out[0].data["previous_status"] == before


def test_feed_publishes_the_first_figure_a_crossed_threshold_or_a_step():
    feed = Feed(channel="m", thresholds=[0, 5, 20], step=10)
    assert feed.due(None, 0)
    assert not feed.due(30, 30)
    assert feed.due(6, 5)  # crossed 5: low stock
    assert not feed.due(40, 31)  # within its band, under the step
    assert feed.due(40, 30)  # moved by the step
    assert feed.due(1, 0)  # out of stock
    assert not Feed(channel="m").due(7, 3)  # default: only in stock or not


def test_every_type_is_documented_with_an_example_that_fits():
    from api.app import create_app

    schema = create_app().openapi()
    assert set(schema["webhooks"]) == set(TYPES)
    for event_type in TYPES:
        op = schema["webhooks"][event_type]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        model = schema["components"]["schemas"][ref]
        [example] = model["examples"]
        assert example["type"] == event_type
        ENVELOPES[event_type].model_validate(example)
        assert "422" not in op["responses"]
