"""read_model.* and order.capture: mirror workflow state into Postgres for the API and reports.

Writes are idempotent and ordered by a version the workflow increments, so a retried or late
snapshot never overwrites a newer one. Timeline entries are keyed and written once. An order's snapshots
are ordered first by the attempt that wrote them (workflows/order/mirror.py stamp): local activities run
inside a workflow task, and a task Temporal runs again may decide otherwise than its discarded attempt,
whose writes are then replaced, not kept because they came first.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Optional

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities import metrics
from activities.deps import Deps
from events import outbox
from events.catalogue import from_status, from_timeline
from events.tracking import tracking_secret, tracking_token
from models.messages import FulfillmentSnapshot, Notification, OrderInput, OrderSnapshot, TimelineEntry, cents
from models.status import COUNTER_METHODS
from models.tables import Fulfillment, Order, Return, TimelineEvent
from nodal.durations import parse_duration
from nodal.intake import ORDER_WORKFLOW, record_intake, start_options
from nodal.logging import get_logger


async def _timeline(conn: AsyncConnection, order_id: str, entries: list[TimelineEntry], stamp: int = 0) -> list[dict]:
    """Write the entries once (by key); returns those new here (a retried write finds the others), as written."""
    if not entries:
        return []
    rows = [dict(order_id=order_id, key=e.key, at=e.at, event=e.event, detail=e.model_dump(mode="json")["detail"],
                 stamp=stamp) for e in entries]
    new: set[str] = set()
    table = TimelineEvent.__table__
    for i in range(0, len(rows), LINE_BATCH):
        new.update((await conn.execute(insert(table).values(rows[i:i + LINE_BATCH]).on_conflict_do_nothing(
            index_elements=["order_id", "key"]).returning(table.c.key))).scalars())
    return [r for r in rows if r["key"] in new]


class _Entry:
    """A timeline row as the event catalogue reads it; an entry written over a discarded attempt's under the same
    key is another event (``again``: the stamp that tells them apart)."""

    __slots__ = ("key", "at", "event", "detail")

    def __init__(self, row: dict, again: Optional[int] = None):
        self.key, self.at, self.event, self.detail = row["key"], row["at"], row["event"], row["detail"]
        if again is not None:
            self.key = f"{self.key}@{again}"


LINE_BATCH = 2000
# Lines as column arrays in one statement: cheap to send and to compile at any size (a 20,000-line order's
# multi-row VALUES took seconds of CPU to build).
_LINES = text(
    "INSERT INTO order_lines (order_id, line_id, sku, qty, unit_price, status, delivery, cancelled_qty, shipped_qty,"
    " delivered_qty, returned_qty, promised_by, digital, uom, pack)"
    " SELECT :o, * FROM unnest(CAST(:line_id AS varchar[]), CAST(:sku AS varchar[]), CAST(:qty AS integer[]),"
    " CAST(:price AS numeric[]), CAST(:status AS varchar[]), CAST(:delivery AS jsonb[]), CAST(:cancelled AS integer[]),"
    " CAST(:shipped AS integer[]), CAST(:delivered AS integer[]), CAST(:returned AS integer[]),"
    " CAST(:promised AS timestamptz[]), CAST(:digital AS boolean[]), CAST(:uom AS varchar[]), CAST(:pack AS integer[]))"
    " ON CONFLICT (order_id, line_id) DO UPDATE SET sku = EXCLUDED.sku, qty = EXCLUDED.qty,"
    " unit_price = EXCLUDED.unit_price, status = EXCLUDED.status, delivery = EXCLUDED.delivery,"
    " cancelled_qty = EXCLUDED.cancelled_qty, shipped_qty = EXCLUDED.shipped_qty,"
    " delivered_qty = EXCLUDED.delivered_qty, returned_qty = EXCLUDED.returned_qty,"
    " promised_by = EXCLUDED.promised_by, digital = EXCLUDED.digital, uom = EXCLUDED.uom, pack = EXCLUDED.pack")


# Lines the read model has: their status, counters and promise, as columns.
_LINE_UPDATES = text(
    "UPDATE order_lines ol SET status = u.status, qty = u.qty, cancelled_qty = u.cancelled_qty,"
    " shipped_qty = u.shipped_qty, delivered_qty = u.delivered_qty, returned_qty = u.returned_qty,"
    " promised_by = u.promised_by, digital = u.digital"
    " FROM unnest(CAST(:line_id AS varchar[]), CAST(:status AS varchar[]), CAST(:qty AS integer[]),"
    " CAST(:cancelled_qty AS integer[]), CAST(:shipped_qty AS integer[]), CAST(:delivered_qty AS integer[]),"
    " CAST(:returned_qty AS integer[]), CAST(:promised_by AS timestamptz[]), CAST(:digital AS boolean[]))"
    " AS u(line_id, status, qty, cancelled_qty, shipped_qty, delivered_qty, returned_qty, promised_by, digital)"
    " WHERE ol.order_id = :o AND ol.line_id = u.line_id")


def _line_arrays(order_id: str, lines) -> dict:
    deliveries: dict[int, str] = {}  # most lines of an order go to the same place: serialized once

    def delivery(d) -> str:
        key = id(d)
        if key not in deliveries:
            deliveries[key] = json.dumps(d.model_dump(mode="json", exclude_none=True))
        return deliveries[key]

    return {"o": order_id, "line_id": [l.line_id for l in lines], "sku": [l.sku for l in lines],
            "qty": [l.qty for l in lines], "price": [cents(l.unit_price * l.pack) for l in lines], "status": [l.status for l in lines],
            "delivery": [delivery(l.delivery) for l in lines], "cancelled": [l.cancelled_qty for l in lines],
            "shipped": [l.shipped_qty for l in lines], "delivered": [l.delivered_qty for l in lines],
            "returned": [l.returned_qty for l in lines], "promised": [l.promised_by for l in lines],
            "digital": [l.digital for l in lines], "uom": [l.uom for l in lines], "pack": [l.pack for l in lines]}


def _upsert(table, rows: list[dict], keys: list[str], guard: tuple[str, ...] = (), first: tuple[str, ...] = ()):
    """Insert or update unless the row is newer by the ``guard`` columns (compared in order); ``first``: columns
    that keep the first value they were given."""
    stmt = insert(table).values(rows)
    update = {c: func.coalesce(table.c[c], stmt.excluded[c]) if c in first else stmt.excluded[c]
              for c in rows[0] if c not in keys}
    where = None
    if guard:
        where = tuple_(*(table.c[c] for c in guard)) <= tuple_(*(stmt.excluded[c] for c in guard))
    return stmt.on_conflict_do_update(index_elements=keys, set_=update, where=where)


class ReadModelActivities:
    def __init__(self, deps: Deps):
        self.deps = deps

    @activity.defn(name="order.capture")
    async def capture(self, order: OrderInput) -> None:
        """Validate the order against the catalog and network as they are now."""
        skus = sorted({l.sku for l in order.lines})
        pickup = sorted({l.delivery.pickup_node_id for l in order.lines if l.delivery.pickup_node_id})
        async with self.deps.db.engine.connect() as conn:
            known = {r.sku for r in (await conn.execute(
                text("SELECT sku FROM skus WHERE sku = ANY(:s)"), {"s": skus})).all()}
            nodes = {r.node_id for r in (await conn.execute(
                text("SELECT node_id FROM nodes WHERE node_id = ANY(:n)"), {"n": pickup})).all()}
        problems = [f"unknown sku {s}" for s in skus if s not in known]
        problems += [f"unknown pickup node {n}" for n in pickup if n not in nodes]
        for l in order.lines:
            if l.delivery.method in COUNTER_METHODS and not l.delivery.pickup_node_id:
                problems.append(f"line {l.line_id}: {l.delivery.method.value} needs pickup_node_id")
        if problems:
            raise ApplicationError("; ".join(problems), type="InvalidOrder", non_retryable=True)

    @activity.defn(name="order.start_replacement")
    async def start_replacement(self, order: OrderInput) -> None:
        """An exchange's replacement: an order of its own, its intake written and its workflow started once (a
        retry attaches to the one running; a crash in between leaves the intake to the recovery sweep)."""
        assert self.deps.temporal is not None, "the worker's Temporal client"
        async with self.deps.db.engine.begin() as conn:
            await record_intake(conn, order)
        try:
            # Never a second run: a retry after the replacement has ended must not place it again.
            await self.deps.temporal.start_workflow(ORDER_WORKFLOW, **start_options(order, activity.info().task_queue),
                                                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            pass

    @activity.defn(name="read_model.record_order")
    async def record_order(self, snap: OrderSnapshot) -> bool:
        """Write the snapshot unless a newer one is there. True when the row was last written by an attempt of a
        workflow task that Temporal discarded (stamped after the order's last snapshot, before this one): its
        timeline entries are taken back here, and the order sends its lines and returns again, complete."""
        s = snap.state
        order_row = dict(
            order_id=s.order_id, external_id=s.external_id, channel=s.channel, customer_id=s.customer_id,
            customer_tier=s.customer_tier, customer_email=snap.customer_email, status=s.status.value,
            currency=s.currency, total=snap.total, policy=s.policy.model_dump(mode="json"),
            requested_delivery_date=s.requested_delivery_date, promised_by=s.promised_by,
            delivered_at=s.delivered_at, return_deadline=s.return_deadline, version=s.version, stamp=snap.stamp,
            at_risk=s.at_risk, created_at=snap.created_at,
            updated_at=snap.timeline[-1].at if snap.timeline else snap.created_at, first_promised_by=s.promised_by,
            cancel_cause=metrics.cause(s.reason) if s.status.value == "cancelled" else None,
        )
        table, before = Order.__table__, Order.__table__.alias("before")
        async with self.deps.db.engine.begin() as conn:
            # The API may have written the intake row first; the version guard keeps the newest state. The status
            # it had comes back too (a subquery in RETURNING reads the row as it was before this statement).
            was = lambda column: select(column).where(before.c.order_id == s.order_id).scalar_subquery()  # noqa: E731
            res = (await conn.execute(_upsert(table, [order_row], ["order_id"], guard=("stamp", "version"),
                                              first=("first_promised_by",)).returning(
                table.c.order_id, was(before.c.status), was(before.c.stamp)))).first()
            if res is None:
                return False  # a newer snapshot is already there
            overwritten = res[2] is not None and snap.after < res[2] < snap.stamp
            again: dict[str, int] = {}
            if overwritten:
                # The discarded attempt's entries go; those of this attempt under the same keys are new events.
                again = {k: snap.stamp for k in (await conn.execute(text(
                    "DELETE FROM timeline_events WHERE order_id = :o AND stamp > :a AND stamp < :s RETURNING key"),
                    {"o": s.order_id, "a": snap.after, "s": snap.stamp})).scalars()}
            if s.lines:
                await conn.execute(_LINES, _line_arrays(s.order_id, s.lines))
            if snap.line_updates is not None and snap.line_updates.line_id:
                await conn.execute(_LINE_UPDATES, {"o": s.order_id, **snap.line_updates.model_dump()})
            # Lines removed by a modification in the remorse window.
            if snap.removed_lines is None:
                await conn.execute(
                    text("DELETE FROM order_lines WHERE order_id = :o AND NOT (line_id = ANY(:ids))"),
                    dict(o=s.order_id, ids=[l.line_id for l in s.lines]))
            elif snap.removed_lines:
                await conn.execute(text("DELETE FROM order_lines WHERE order_id = :o AND line_id = ANY(:ids)"),
                                   dict(o=s.order_id, ids=snap.removed_lines))
            if s.returns:
                await conn.execute(_upsert(Return.__table__, [
                    dict(return_id=r.return_id, order_id=s.order_id, status=r.status.value, method=r.method,
                         node_id=r.node_id, reason=r.reason, lines=[l.model_dump(mode="json") for l in r.lines],
                         label=r.label.model_dump(mode="json") if r.label else None, refund_amount=r.refund_amount)
                    for r in s.returns
                ], ["return_id"]))
            written = await _timeline(conn, s.order_id, snap.timeline, snap.stamp)
            at = snap.timeline[-1].at if snap.timeline else snap.created_at
            new = await outbox.write(conn, from_timeline(s.order_id, [
                _Entry(r, again.get(r["key"])) for r in written]) + from_status(
                s.order_id, s.version, res[1], s.status, at, promised_by=s.promised_by and s.promised_by.isoformat(),
                reason=s.reason if s.status.value in ("cancelled", "rejected") else None,
                again=snap.stamp if overwritten else None))
        metrics.events((e.type, e.channel, e.node_id, e.data) for e in new)
        metrics.reroutes(r["detail"].get("reason", "") for r in written if r["event"] == "routing_decision"
                         and r["detail"].get("attempt", 1) == 1)
        if overwritten:
            get_logger(order_id=s.order_id).warning("read_model.attempt_overwritten", stamp=snap.stamp,
                                                    discarded=res[2], entries_taken_back=len(again))
        return overwritten

    @activity.defn(name="read_model.record_fulfillment")
    async def record_fulfillment(self, snap: FulfillmentSnapshot) -> None:
        f = snap.fulfillment
        row = dict(
            fulfillment_id=f.fulfillment_id, order_id=snap.order_id, node_id=f.node_id, status=f.status.value,
            lines=[l.model_dump(mode="json") for l in f.lines], carrier=f.carrier, tracking=f.tracking,
            ship_by=f.ship_by, reason=f.reason, version=snap.version, released_at=f.released_at,
            accepted_at=f.accepted_at, picked_at=f.picked_at, shipped_at=f.shipped_at, requested_units=f.requested_units,
            short_units=f.short_units, at_risk=f.at_risk, kind=f.kind.value,
            method=f.method.value if f.method else None, promised_by=f.promised_by, ready_at=f.ready_at,
            hold_until=f.hold_until, arrived_at=f.arrived_at, bay=f.bay, arrival_note=f.arrival_note,
            delivered_at=f.delivered_at, to_node_id=f.to_node_id, wave=f.wave,
        )
        table = Fulfillment.__table__
        if snap.lines_changed:
            write = _upsert(table, [row], ["fulfillment_id"], guard=("version",))
        else:
            # Lines as last written (a first write always carries them). An UPDATE: an INSERT without the
            # NOT NULL lines would fail even on conflict.
            del row["lines"]
            write = (update(table).where(table.c.fulfillment_id == f.fulfillment_id, table.c.version <= snap.version)
                     .values(**row))
        async with self.deps.db.engine.begin() as conn:
            await conn.execute(write)
            written = await _timeline(conn, snap.order_id, snap.timeline)
            new = await outbox.write(conn, from_timeline(snap.order_id, map(_Entry, written)))
        metrics.events((e.type, e.channel, e.node_id, e.data) for e in new)
        get_logger(order_id=snap.order_id, fulfillment_id=f.fulfillment_id).info(
            "fulfillment.recorded", status=f.status.value, node_id=f.node_id)

    @activity.defn(name="network.pickup_hold")
    async def pickup_hold(self, node_id: str) -> Optional[timedelta]:
        async with self.deps.db.engine.connect() as conn:
            hold = (await conn.execute(text("SELECT calendar->>'pickup_hold' FROM nodes WHERE node_id = :n"),
                                       {"n": node_id})).scalar()
        return parse_duration(hold) if hold else None

    @activity.defn(name="notify.send")
    async def notify(self, n: Notification) -> None:
        detail = dict(n.detail)
        async with self.deps.db.engine.begin() as conn:
            row = (await conn.execute(
                text("SELECT customer_email FROM orders WHERE order_id = :o"), {"o": n.order_id})).first()
            if n.event == "confirmed":
                # The customer's own tracking page, signed: it opens this order and no other.
                token = tracking_token(await tracking_secret(conn), n.order_id)
                detail["track"] = f"/track/{n.order_id}?token={token}"
        if row is None or not row.customer_email:
            get_logger(order_id=n.order_id).info("notify.skipped_no_contact", notification=n.event)
            return
        await self.deps.notifier.send(n.key, n.order_id, n.event, {**detail, "to": row.customer_email})
        get_logger(order_id=n.order_id).info("notify.sent", notification=n.event, key=n.key)
