"""The order's book and rules without Temporal: counters that always add up, one status ladder, the checks
behind every Update."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st
from temporalio.exceptions import ApplicationError

from models.messages import (
    CancelIn, CancelLine, Customer, Delivery, FulfillmentState, Line as LineIn, LineQty, ModifyIn, ModifyLine,
    OrderInput, ReceiveIn, ReceiveLineIn, ReorchestrateIn, ReturnIn, ReturnLineIn, ReturnState, ReturnLineState, Windows,
)
from models.status import DeliveryMethod, FulfillmentStatus as FS, OrderStatus as OS, ReturnStatus
from workflows.common import CONFLICT, INVALID
from workflows.order import rules
from workflows.order.book import Book, Planned, ladder

NOW = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
SHIP = Delivery(method=DeliveryMethod.ship_standard, address={"postal_code": "10001"})


def order(lines: dict[str, int], **kw) -> Book:
    inp = OrderInput(order_id="O1", external_id="E1", channel="web", customer=Customer(id="c1", **kw),
                     lines=[LineIn(line_id=k, sku=f"S-{k}", qty=q, unit_price=Decimal("10.00"), delivery=SHIP)
                            for k, q in lines.items()],
                     windows=Windows(remorse=timedelta(minutes=30), accept_timeout=timedelta(hours=2),
                                     return_window=timedelta(days=30)))
    return Book.new(inp)


def planned(fid: str, lines: dict[str, int], node: str = "DC") -> Planned:
    return Planned(fulfillment_id=fid, node_id=node, method=DeliveryMethod.ship_standard,
                   lines=[LineQty(line_id=k, sku=f"S-{k}", qty=q) for k, q in lines.items()])


def release(book: Book, p: Planned) -> FulfillmentState:
    if p.fulfillment_id not in book.planned:
        book.plan(p)
    book.unplan(p.fulfillment_id)
    f = FulfillmentState(fulfillment_id=p.fulfillment_id, node_id=p.node_id, status=FS.released, lines=p.lines)
    book.start(f)
    return f


def assert_adds_up(book: Book) -> None:
    for line in book.lines.values():
        assert line.qty == line.cancelled + line.planned + line.at_nodes + line.open or line.digital
        assert 0 <= line.delivered <= line.shipped <= line.at_nodes or line.digital
    for name in ("live", "open", "planned", "at_nodes", "shipped", "delivered", "returned"):
        assert getattr(book.total, name) == sum(getattr(l, name) for l in book.lines.values()), name


def error_type(fn, *args):
    with pytest.raises(ApplicationError) as e:
        fn(*args)
    return e.value.type


# ---------------------------------------------------------------- counters and the ladder
def test_a_line_moves_from_open_to_planned_to_a_node_to_delivered():
    book = order({"L1": 3, "L2": 1})
    assert (book.total.open, book.status()) == (4, OS.received)
    p = planned("F1", {"L1": 3, "L2": 1})
    book.plan(p)
    book.phase = OS.released
    assert (book.total.open, book.total.planned, book.status()) == (0, 4, OS.awaiting_release)
    f = release(book, p)
    assert (book.total.planned, book.total.at_nodes, book.status()) == (0, 4, OS.released)
    book.update_fulfillment(f, FS.shipped, f.lines)
    assert book.status() == OS.shipped
    book.update_fulfillment(f, FS.delivered, f.lines)
    assert book.status() == OS.delivered and book.line_status(book.lines["L2"]) == OS.delivered
    assert_adds_up(book)


def test_a_short_pick_opens_units_and_a_rejection_opens_them_all():
    book = order({"L1": 5})
    book.phase = OS.released
    f = release(book, planned("F1", {"L1": 5}))
    book.update_fulfillment(f, FS.picked, [LineQty(line_id="L1", sku="S-L1", qty=3)])
    assert (book.lines["L1"].open, book.status()) == (2, OS.backordered)
    book.update_fulfillment(f, FS.rejected, [])
    assert (book.lines["L1"].open, book.lines["L1"].at_nodes) == (5, 0)
    assert_adds_up(book)


def test_one_ladder_for_lines_and_the_order():
    assert ladder(OS.awaiting_release, 0, 0, 0, 0, 0, 0, 0) == OS.cancelled
    assert ladder(OS.rejected, 0, 0, 0, 0, 0, 0, 0) == OS.rejected
    assert ladder(OS.released, 4, 2, 0, 0, 0, 0, 4) == OS.partially_shipped
    assert ladder(OS.released, 4, 4, 4, 1, 0, 0, 4) == OS.partially_returned
    assert ladder(OS.released, 4, 4, 4, 4, 0, 0, 4) == OS.returned
    assert ladder(OS.released, 4, 0, 0, 0, 1, 0, 3) == OS.backordered
    assert ladder(OS.released, 4, 0, 0, 0, 0, 4, 0) == OS.awaiting_release


OPS = st.lists(st.tuples(st.sampled_from(["plan", "start", "ship", "deliver", "short", "fail", "cancel"]),
                         st.integers(0, 5), st.integers(1, 4)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_counters_always_add_up(ops):
    """Whatever happens to an order, its totals are the sums of its lines and every unit is in one place."""
    book = order({f"L{i}": 4 for i in range(6)})
    book.phase = OS.released
    n = 0
    for op, i, q in ops:
        line = book.lines[f"L{i}"]
        live = [f for f in book.fulfillments.values() if f.status not in (FS.rejected, FS.cancelled, FS.delivered)]
        if op == "plan" and line.open:
            n += 1
            book.plan(planned(f"F{n}", {line.line_id: min(q, line.open)}))
        elif op == "start" and book.planned:
            release(book, next(iter(book.planned.values())))
        elif op in ("ship", "deliver", "fail") and live:
            f = live[i % len(live)]
            book.update_fulfillment(f, {"ship": FS.shipped, "deliver": FS.delivered, "fail": FS.rejected}[op],
                                    [] if op == "fail" else f.lines)
        elif op == "short" and live:
            f = live[i % len(live)]
            if f.status not in (FS.shipped, FS.delivered):
                book.update_fulfillment(f, FS.picked, [LineQty(line_id=l.line_id, sku=l.sku, qty=max(l.qty - q, 0))
                                                       for l in f.lines])
        elif op == "cancel" and line.open:
            book.edit(line, cancelled=min(q, line.open))
        assert_adds_up(book)


# ---------------------------------------------------------------- rules
def test_cancel_takes_what_has_not_shipped_and_refuses_more():
    book = order({"L1": 3, "L2": 2})
    book.phase = OS.released
    f = release(book, planned("F1", {"L1": 3}))
    book.update_fulfillment(f, FS.shipped, f.lines)
    assert rules.check_cancellable(book, CancelIn()) == {"L2": 2}
    assert error_type(rules.check_cancellable, book, CancelIn(lines=[CancelLine(line_id="L1")])) == CONFLICT
    assert error_type(rules.check_cancellable, book, CancelIn(lines=[CancelLine(line_id="L9")])) == INVALID
    assert error_type(rules.check_cancellable, book, CancelIn(lines=[CancelLine(line_id="L2", qty=3)])) == CONFLICT
    assert rules.check_cancellable(book, CancelIn(lines=[CancelLine(line_id="L2", qty=1)])) == {"L2": 1}
    dup = CancelIn(lines=[CancelLine(line_id="L2", qty=1), CancelLine(line_id="L2", qty=1)])
    assert error_type(rules.check_cancellable, book, dup) == INVALID


def test_only_a_b2b_order_changes_after_release_and_only_its_quantities_and_date():
    line = ModifyLine(line_id="L1", sku="S-L1", qty=5, unit_price=Decimal("10.00"))
    book = order({"L1": 3})
    book.phase = OS.released
    assert error_type(rules.check_released_change, book, ModifyIn(lines=[line])) == CONFLICT
    b2b = order({"L1": 3}, tier="b2b")
    b2b.phase = OS.released
    assert rules.check_released_change(b2b, ModifyIn(lines=[line])) == {"L1": 5}
    other = line.model_copy(update={"sku": "S-OTHER"})
    assert error_type(rules.check_released_change, b2b, ModifyIn(lines=[other])) == CONFLICT
    f = release(b2b, planned("F1", {"L1": 3}))
    b2b.update_fulfillment(f, FS.shipped, f.lines)
    fewer = line.model_copy(update={"qty": 2})
    assert error_type(rules.check_released_change, b2b, ModifyIn(lines=[fewer])) == CONFLICT


def test_a_modification_keeps_ids_names_new_lines_and_moves_only_shipped_lines():
    book = order({"L1": 1, "L2": 1})
    pickup = Delivery(method=DeliveryMethod.pickup, pickup_node_id="STORE-1")
    body = ModifyIn(lines=[ModifyLine(line_id="L2", sku="S-L2", qty=2, unit_price=Decimal("1")),
                           ModifyLine(sku="S-NEW", qty=1, unit_price=Decimal("1")),
                           ModifyLine(sku="S-PICK", qty=1, unit_price=Decimal("1"), delivery=pickup)],
                    address={"postal_code": "60601"})
    lines = {l.line_id: l for l in rules.modified_lines(book, body)}
    # A dropped line's id is not given to a new one (its history stays its own).
    assert sorted(lines) == ["L2", "L3", "L4"]
    assert lines["L2"].qty == 2 and lines["L3"].sku == "S-NEW"
    assert lines["L3"].delivery.address.postal_code == "60601" and lines["L4"].delivery == pickup


def test_returns_are_checked_against_what_was_delivered_and_the_window():
    book = order({"L1": 2})
    book.phase = OS.released
    f = release(book, planned("F1", {"L1": 2}))
    body = ReturnIn(lines=[ReturnLineIn(line_id="L1", qty=1)], reason="too small")
    assert error_type(rules.check_return, book, body, NOW) == CONFLICT  # nothing delivered yet
    book.update_fulfillment(f, FS.delivered, f.lines)
    f.delivered_at = NOW
    rules.check_return(book, body, NOW + timedelta(days=29))
    assert error_type(rules.check_return, book, body, NOW + timedelta(days=31)) == CONFLICT
    too_many = ReturnIn(lines=[ReturnLineIn(line_id="L1", qty=3)], reason="x")
    assert error_type(rules.check_return, book, too_many, NOW) == CONFLICT
    in_store = ReturnIn(lines=[ReturnLineIn(line_id="L1", qty=1)], reason="x", method="in_store")
    assert error_type(rules.check_return, book, in_store, NOW) == INVALID


def test_a_return_is_received_once():
    book = order({"L1": 2})
    book.returns["R1"] = ReturnState(return_id="R1", status=ReturnStatus.requested, method="ship_back", node_id="DC",
                                     reason="x", lines=[ReturnLineState(line_id="L1", qty=1)])
    got = ReceiveIn(lines=[ReceiveLineIn(line_id="L1", qty=1, disposition="sellable")])
    assert rules.check_receive(book, "R1", got) is True
    over = ReceiveIn(lines=[ReceiveLineIn(line_id="L1", qty=2, disposition="sellable")])
    assert error_type(rules.check_receive, book, "R1", over) == INVALID
    book.returns["R1"].status = ReturnStatus.refunded
    assert rules.check_receive(book, "R1", got) is False


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(0, 3), st.booleans(), st.sampled_from(["10001", "94105"]),
                          st.booleans()), min_size=1, max_size=30))
def test_a_book_continues_as_new_whole_with_its_lines_as_columns(spec):
    """What continue-as-new carries comes back equal: every line field (prices, promises, claims, exclusions,
    each line's own delivery), the other parts of the book too; and the lines travel as columns."""
    import json

    from pydantic import TypeAdapter

    from models.messages import SupplyClaimLine
    from workflows.order.book import carried

    book = order({f"L{i}": q for i, (q, *_rest) in enumerate(spec)})
    for i, (q, cancelled, promised, postal, claimed) in enumerate(spec):
        line = book.lines[f"L{i}"]
        book.edit(line, cancelled=min(cancelled, q))
        line.unit_price = Decimal(f"{i}.{q}5")
        line.delivery = Delivery(method=DeliveryMethod.ship_express, address={"postal_code": postal, "line1": f"{i} St"})
        line.promised_by = NOW + timedelta(hours=i) if promised else None
        line.excluded = ["DC-A"] if claimed else []
        line.claims = [SupplyClaimLine(line_id=line.line_id, supply_id="PO-1", sku=line.sku, qty=1)] if claimed else []
    release(book, planned("F1", {"L0": book.lines["L0"].open}))
    data = json.dumps(carried(book))
    assert json.loads(data)["lines"]["columns"]["line_id"] == list(book.lines)
    back = TypeAdapter(Book).validate_json(data)
    assert back == book
    assert_adds_up(back)


def test_a_book_written_with_lines_as_objects_still_reads():
    """A book carried before the columns (lines as objects) continues all the same."""
    from pydantic import TypeAdapter
    from pydantic_core import to_json

    book = order({"L1": 2, "L2": 3})
    assert TypeAdapter(Book).validate_json(to_json(book)) == book


def test_a_fulfillment_moved_already_is_not_moved_again():
    """Reorchestrating a failed fulfillment re-sources what still waits for a node; once every unit is with a node
    again (a reroute, an earlier reorchestrate), a repeat is refused instead of succeeding silently."""
    book = order({"L1": 2})
    book.enter(OS.released)
    f1 = release(book, planned("F1", {"L1": 2}))
    assert rules.check_reorchestrate(book, ReorchestrateIn(fulfillment_id="F1", reason="stuck")) is None
    book.update_fulfillment(f1, FS.rejected, [])
    rules.check_reorchestrate(book, ReorchestrateIn(fulfillment_id="F1", reason="waiting for support"))
    release(book, planned("F2", {"L1": 2}, node="DC-2"))
    assert error_type(rules.check_reorchestrate, book, ReorchestrateIn(fulfillment_id="F1", reason="again")) == CONFLICT


def test_the_story_support_reads_says_what_the_order_waits_for():
    from workflows.order import story

    book = order({"L1": 2, "L2": 1})
    assert "Waiting for: its promise" in story.details(book, NOW)
    book.enter(OS.awaiting_release)
    book.release_at = NOW + timedelta(minutes=30)
    book.plan(planned("F1", {"L1": 2, "L2": 1}, node="DC-EAST"))
    text = story.details(book, NOW)
    assert text.startswith("**Awaiting release** · 3 unit(s) in 2 line(s) · channel web")
    assert "the remorse window to end at 2026-12-02 12:30 UTC" in text and "- F1 at DC-EAST: reserved" in text
    assert "Next deadline: release to the nodes by 2026-12-02 12:30 UTC" in text
    book.enter(OS.released)
    f = release(book, book.planned["F1"])
    f.released_at = NOW + timedelta(minutes=30)
    text = story.details(book, NOW)
    assert "Waiting for: DC-EAST to accept F1" in text
    assert "Next deadline: DC-EAST to accept by 2026-12-02 14:30 UTC" in text  # released + the 2 h acceptance
    assert "- F1 at DC-EAST: released, accept by 2026-12-02 14:30 UTC" in text
    book.update_fulfillment(f, FS.shipped, f.lines)
    f.carrier, f.tracking, f.promised_by = "ups", "1Z999", NOW + timedelta(days=3)
    assert "- F1 at DC-EAST: shipped (ups 1Z999), deliver by 2026-12-05 12:00 UTC" in story.details(book, NOW)
    book.update_fulfillment(f, FS.delivered, f.lines)
    f.delivered_at = NOW + timedelta(days=2)
    for line in book.lines.values():
        book.edit(line, shipped=line.live, delivered=line.live)
    book.enter(OS.delivered)
    text = story.details(book, NOW + timedelta(days=2))
    assert text.startswith("**Delivered**") and "Waiting for: returns until 2027-01-03 12:00 UTC" in text, text
    assert "Waiting for: nothing: the order is delivered" in story.details(book, NOW + timedelta(days=40))
