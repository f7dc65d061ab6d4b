"""The sourcing service: read live availability, ask the engine, date the result.

The order workflow's plan activity, quotes (POST /promise), checkout holds and the routing simulation all
plan through ``plan_request``; it and the network reader (routing/store.py) are the I/O beside the pure engine.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Optional

from sqlalchemy import text
from nodal.db import Database, LazyConnection
from routing.store import (
    load_carrier_closures, load_network, load_scorecards, memo, memo_many, node_info, postal_coordinates,
)
from models.messages import Allocation, BidPriceRefresh, Candidate, LineQty, Plan, PlanRequest, SupplyClaimLine
from models.status import DeliveryMethod
from nodal.logging import get_logger
from promise import CarrierCalendar, promised_by, release_start
from promise.dates import COUNTER, PRODUCT_BUFFER, Quote, next_wave
from routing import CostModel, NetworkView, RouteLine, RouteRequest, plan
from routing.bidprice import ForecastEntry, network_bid_prices
from routing.engine import NO_STOCK
from routing.fast import Tables, quick_plan
from routing.rules import RoutingRules, apply_rules
from routing.cost import distance_km, is_transfer, package_cost, quote_line, unit_cost

COSTS = CostModel()
UNANNOUNCED_SECONDS = 30.0  # reads derived from tables no trigger announces (scorecards) are at most this old
THREAD_LINES = 200


@dataclass
class RoutingView:
    """What a request may route over, read once: the network as the rules shape it, and where its postal
    codes are. POST /promise plans every delivery method over one view."""

    net: NetworkView
    rules_version: int
    coords: dict[str, tuple[float, float]]
    # Incoming supply rows per (SKUs, order) once read for backorder dates, so each method's plan reuses them.
    supply: dict[tuple, list] = field(default_factory=dict)
    # Address.ship_to per address object of the requests planned over this view (a hash of the address: a quote's
    # lines and plans share one address).
    places: dict[int, tuple] = field(default_factory=dict)

    def place(self, address) -> str:
        hit = self.places.get(id(address))
        if hit is None or hit[0] is not address:
            hit = self.places[id(address)] = (address, address.ship_to())
        return hit[1]


async def load_view(db: Database, req: PlanRequest, cache_seconds: float = 0.0, index=None) -> RoutingView:
    """``cache_seconds`` > 0 (quotes): the slow-changing network comes from this process's memo
    (routing.store.memo) and only stock and today's capacity are read; with an ``index`` (the availability
    index: quotes and holds, never an order's reservation) stock comes from memory."""
    postal = sorted({l.delivery.address.postal_code for l in req.lines if l.delivery.address})
    # With the index everything is usually in memory: a connection is checked out only for what is not.
    async with (LazyConnection(db.engine) if index is not None else db.engine.connect()) as conn:
        coords = {k: v for k, v in (await memo_many(
            conn, "coords", postal, cache_seconds, lambda keys: postal_coordinates(conn, keys), absent=False)).items()
            if v}
        net = await load_network(conn, sorted({l.sku for l in req.lines}), postal, req.at, req.channel, req.hold_id,
                                 req.customer_tier, cache_seconds, index)
        rules_version, rules = await memo(conn, "rules", cache_seconds, lambda: load_rules(conn))
        # Unreliable partners cost more per unit, when the rules say by how much.
        # Scorecards follow fulfillments, which nothing announces: at most UNANNOUNCED_SECONDS old, whatever the memo's.
        cards = await memo(conn, "scorecards", min(cache_seconds, UNANNOUNCED_SECONDS), lambda: load_scorecards(conn)) \
            if rules.partner_penalty else None
        closures = await memo(conn, "closures", cache_seconds, lambda: load_carrier_closures(conn))
    net = apply_rules(net, rules, cards)
    net.carriers, net.promise_buffer = CarrierCalendar(closures=closures), PRODUCT_BUFFER
    return RoutingView(net, rules_version, coords)


# The quote engine's per-destination tables, per network read, rules version and channel (a few reads at a time:
# a read is current until the network memo lets it go).
_TABLES: dict[tuple, tuple[object, Tables]] = {}


def tables_for(view: RoutingView) -> Tables:
    net = view.net
    if net.epoch is None:
        return Tables()
    # Partner reliability moves the preferences between reads of the rules: they are part of the key.
    key = (id(net.epoch), view.rules_version, net.channel, frozenset(net.preference.items()) if net.preference else None)
    hit = _TABLES.get(key)
    if hit is None or hit[0] is not net.epoch:
        if len(_TABLES) > 64:
            _TABLES.clear()
        hit = _TABLES[key] = (net.epoch, Tables())
    return hit[1]


def _expedite(node, line: RouteLine, net: NetworkView, at: datetime, dated: Optional[Quote], due,
              allowed: bool, held) -> Optional[Quote]:
    """A re-sourced ground shipment that would arrive after the line's promise goes express when express arrives
    sooner: the brand pays the faster service to keep (or come closest to) the date it sold. None: as planned."""
    if (not allowed or due is None or dated is None or held is not None or line.method != DeliveryMethod.ship_standard
            or dated.promised_by.date() <= due):
        return None
    quick = quote_line(node, replace(line, method=DeliveryMethod.ship_express.value), net, at, None)
    return quick if quick is not None and quick.promised_by < dated.promised_by else None


async def plan_request(db: Database, req: PlanRequest, budget_ms: float | None = None,
                       view: RoutingView | None = None, explain: bool = True) -> Plan:
    """Route a request and date the result; ``view`` is read for it when not given. A quote does not
    ``explain``: it gets no per-node candidates."""
    view = view or await load_view(db, req)
    net, coords, rules_version = view.net, view.coords, view.rules_version
    route_lines = []
    for l in req.lines:
        addr = l.delivery.address
        lat = lon = None
        store = net.nodes.get(l.delivery.pickup_node_id or "")
        if l.delivery.method in COUNTER and store is not None:
            lat, lon = store.lat, store.lon  # a transfer's distance: from its source to the pickup store
        elif addr is not None:
            lat, lon = (addr.lat, addr.lon) if addr.lat is not None and addr.lon is not None else coords.get(
                addr.postal_code, (None, None))
        route_lines.append(RouteLine(
            line_id=l.line_id, sku=l.sku, qty=l.qty, method=l.delivery.method.value,
            postal_code=addr.postal_code if addr else None, lat=lat, lon=lon,
            pickup_node_id=l.delivery.pickup_node_id, exclude_nodes=frozenset(l.exclude_nodes),
            due=l.due or req.requested_delivery_date, pack=l.pack, complete=l.complete,
        ))
    start_at = max(req.release_at or req.at, req.at)
    route = RouteRequest(
        lines=tuple(route_lines), ship_complete=req.policy.ship_complete, fill_or_kill=req.policy.fill_or_kill,
        min_fill_rate=req.policy.min_fill_rate, max_splits=req.policy.max_splits,
        exclude_nodes=frozenset(req.exclude_nodes), to_node=req.to_node, at=start_at, budget_ms=budget_ms,
        per_line=req.policy.sourcing == "line",
    )
    # A large order's routing is seconds of CPU: off the event loop, so the worker's workflow tasks and other
    # activities keep going meanwhile.
    quick = None if explain else quick_plan(route, net, COSTS, tables_for(view))
    result = quick or (await asyncio.to_thread(plan, route, net, COSTS) if len(route_lines) > THREAD_LINES else plan(
        route, net, COSTS))

    by_line = {l.line_id: l for l in route_lines}
    due = {l.line_id: l.due for l in req.lines}  # a line's own promise (a reroute's), not a B2B requested date
    # One shipment per node, method and place: two ship-tos in one postal code are two parcels.
    ship_to = {l.line_id: view.place(l.delivery.address) if l.delivery.address else None for l in req.lines}
    groups: dict[tuple[str, str, str | None, str | None, str | None], list[LineQty]] = defaultdict(list)
    for a in result.assignments:
        line = by_line[a.line_id]
        groups[(a.node_id, line.method, line.postal_code, line.pickup_node_id, ship_to[a.line_id])].append(
            LineQty(line_id=a.line_id, sku=a.sku, qty=a.qty))
    allocations = []
    for (node_id, method, postal_code, _, place), lines in groups.items():
        node = net.nodes[node_id]
        line = by_line[lines[0].line_id]
        km = distance_km(node, line)
        m = DeliveryMethod(method)
        hold_until = _not_before(node, [q.sku for q in lines], net, start_at)
        dated = quote_line(node, line, net, hold_until or start_at, None if hold_until else req.requested_delivery_date)
        if dated is not None and dated.hold_until is not None:
            hold_until = dated.hold_until  # scheduled backwards to the requested date
        # Released with the node's next wave, and dated from it.
        wave = next_wave(node, hold_until or start_at) if req.policy.release == "wave" else None
        if wave is not None and wave != hold_until:
            hold_until = wave
            dated = quote_line(node, line, net, wave, None)
        faster = _expedite(node, line, net, start_at, dated, due.get(line.line_id), req.policy.expedite, hold_until)
        if faster is not None:
            m, dated = DeliveryMethod.ship_express, faster
        priced = {q.line_id: by_line[q.line_id] if m.value == method else replace(by_line[q.line_id], method=m.value)
                  for q in lines}
        allocations.append(Allocation(
            node_id=node_id, method=m, postal_code=postal_code, ship_to=place, lines=lines, distance_km=round(km, 1),
            cost=Decimal(str(round(package_cost(priced[line.line_id], COSTS) + sum(
                q.qty * unit_cost(node, priced[q.line_id], COSTS) for q in lines), 2))),
            expedited=faster is not None,
            ship_by=dated.ship_by if dated else None,
            promised_by=dated.promised_by if dated else None, hold_until=hold_until,
            carrier=dated.carrier if dated else None, service=dated.service if dated else None,
            transfer_to=line.pickup_node_id if is_transfer(node_id, line) else None, wave=wave,
        ))
    feasible, reason, unfilled = result.feasible, result.reason, dict(result.unfilled)
    if not feasible and result.reason == NO_STOCK and not req.policy.fill_or_kill:
        # Nothing on hand: the order can still be taken as a backorder or preorder if incoming supply covers it all.
        unfilled = {l.line_id: l.qty for l in route_lines}
    dates, claims = (await _backorder_dates(db, req.order_id, unfilled, by_line, view, start_at)
                     if unfilled else ({}, []))
    if not feasible and unfilled and not req.policy.fill_or_kill and set(dates) == set(unfilled):
        feasible, reason = True, ""
    elif not feasible:
        dates, claims, unfilled = {}, [], dict(result.unfilled)
    candidates = [Candidate(node_id=v.node_id, outcome=v.outcome, reason=v.reason,
                            cost=None if v.cost is None else Decimal(str(v.cost))) for v in result.verdicts] if explain else []
    if explain:  # a quote logs once for all its methods
        get_logger(order_id=req.order_id).info(
            "routing.planned", feasible=feasible, nodes=[a.node_id for a in allocations], cost=result.cost,
            backordered=sorted(dates))
    return Plan(
        feasible=feasible, reason=reason, allocations=allocations,
        unfilled=[LineQty(line_id=k, sku=by_line[k].sku, qty=v) for k, v in unfilled.items()],
        backorder_dates=dates, supply_claims=claims, rules_version=rules_version, exact=result.exact,
        lower_bound=Decimal(str(round(result.lower_bound, 2))), search_cost=Decimal(str(round(result.search_cost, 2))),
        total_cost=Decimal(str(round(result.cost, 2))), future_cost=Decimal(str(round(result.future_cost, 2))),
        candidates=candidates,
        digital=[LineQty(line_id=k, sku=by_line[k].sku, qty=v) for k, v in result.digital.items()],
    )


async def rules_row(conn, version: int | None = None):
    """A stored version of the routing rules (the one in force when no version is given), or None."""
    return (await conn.execute(text(
        "SELECT version, rules, actor, created_at FROM routing_rules"
        + (" WHERE version = :v" if version else " ORDER BY version DESC LIMIT 1")), {"v": version})).first()


async def load_rules(conn) -> tuple[int, RoutingRules]:
    """The routing rules in force and their version (0: none set, the defaults)."""
    row = await rules_row(conn)
    return (0, RoutingRules()) if row is None else (row.version, RoutingRules.model_validate(row.rules))


def _not_before(node, skus: list[str], net, at: datetime) -> datetime | None:
    """The latest release day among preorder SKUs in a shipment, if it is still ahead."""
    starts = [release_start(node, r.preorder_release) for s in skus
              if (r := net.skus.get(s)) is not None and r.preorder_release is not None]
    latest = max(starts, default=None)
    return latest if latest is not None and latest > at else None


async def _backorder_dates(db: Database, order_id: str, unfilled: dict[str, int], lines: dict, view: RoutingView,
                           at: datetime) -> tuple[dict[str, datetime], list[SupplyClaimLine]]:
    """Date units nobody has from the earliest incoming supply not yet promised to another order.

    Supply is never sold as stock; each unit of it is promised once, first come first served (the claims
    are taken with the reservation). A preorder is dated from its release day when that is later.
    """
    net = view.net
    skus = tuple(sorted({lines[l].sku for l in unfilled}))
    if not net.incoming.intersection(skus):
        return {}, []
    rows = view.supply.get((skus, order_id))
    if rows is None:
        async with db.engine.connect() as conn:
            rows = view.supply[(skus, order_id)] = (await conn.execute(text(
                "SELECT s.supply_id, s.sku, s.eta, s.qty - COALESCE((SELECT SUM(c.qty) FROM supply_claims c"
                "  WHERE c.supply_id = s.supply_id AND c.order_id <> :o), 0) AS free, n.*"
                " FROM incoming_supply s JOIN nodes n USING (node_id)"
                " WHERE s.sku = ANY(:s) AND s.qty > 0 AND n.enabled ORDER BY s.eta, s.supply_id"),
                {"s": list(skus), "o": order_id})).all()
    free = {r.supply_id: max(int(r.free), 0) for r in rows}
    dates: dict[str, datetime] = {}
    claims: list[SupplyClaimLine] = []
    for line_id, qty in sorted(unfilled.items()):
        line, taken = lines[line_id], []
        for r in rows:
            if r.sku != line.sku or not free[r.supply_id]:
                continue
            take = min(free[r.supply_id], qty - sum(t[1] for t in taken))
            taken.append((r, take))
            if sum(t[1] for t in taken) == qty:
                break
        if sum(t[1] for t in taken) < qty:
            continue  # not covered: the line waits undated
        last = taken[-1][0]
        node = node_info(last)
        start = max(last.eta, at)
        hold = _not_before(node, [line.sku], net, start)
        date = promised_by(node, DeliveryMethod(line.method), distance_km(node, line), hold or start, net.carriers,
                           net.promise_buffer)
        if date is None:
            continue  # no date this method can keep from there (a same-day cutoff): the line waits undated
        dates[line_id] = date
        for r, take in taken:
            free[r.supply_id] -= take
            claims.append(SupplyClaimLine(line_id=line_id, supply_id=r.supply_id, sku=line.sku, qty=take))
    return dates, claims


async def refresh_bid_prices(db: Database, at: datetime) -> BidPriceRefresh:
    """Re-solve the forecast LP on today's stock and replace the bid prices routing reads.

    The forecast covers ``horizon_days`` from its ``as_of``; the part of it still ahead is what the stock on
    hand has to serve, so expected orders are scaled by the fraction of the horizon left. Idempotent: a run
    replaces every price, so a retried or repeated run leaves the same table.
    """
    started = time.perf_counter()
    async with db.engine.connect() as conn:
        forecast = (await conn.execute(text(
            "SELECT version, as_of, horizon_days FROM demand_forecasts ORDER BY version DESC LIMIT 1"))).first()
        rows = [] if forecast is None else (await conn.execute(text(
            "SELECT e.postal_code, e.skus, e.expected, p.lat, p.lon FROM demand_forecast_entries e"
            " JOIN postal_codes p USING (postal_code) WHERE e.version = :v ORDER BY e.entry"),
            {"v": forecast.version})).all()
        horizon = timedelta(days=forecast.horizon_days) if forecast else timedelta(0)
        left = 0.0 if forecast is None else min(max(1 - (at - forecast.as_of) / horizon, 0.0), 1.0)
        prices: dict[tuple[str, str], float] = {}
        if rows and left > 0:
            skus = sorted({s for r in rows for s in r.skus})
            net = await load_network(conn, skus, sorted({r.postal_code for r in rows}), at)
            _, rules = await load_rules(conn)
            net = apply_rules(net, rules)
            # Each node's units over the days still ahead, not just today's.
            days = math.ceil(left * forecast.horizon_days)
            capacity = {r.node_id: None if r.units_per_day is None else r.units_per_day * days for r in (
                await conn.execute(text("SELECT node_id, units_per_day FROM nodes"))).all()}
            entries = [ForecastEntry(r.postal_code, r.lat, r.lon, tuple(r.skus), r.expected * left) for r in rows]
            # The LP is CPU work: off the event loop, so heartbeats and other activities keep going.
            prices = await asyncio.to_thread(network_bid_prices, entries, net, capacity, COSTS)
    priced = {k: v for k, v in prices.items() if v > 1e-6}
    async with db.engine.begin() as conn:
        await conn.execute(text("LOCK TABLE bid_prices IN EXCLUSIVE MODE"))  # one refresh writes at a time
        await conn.execute(text("DELETE FROM bid_prices"))
        if priced:
            await conn.execute(text(
                "INSERT INTO bid_prices (node_id, sku, price, forecast_version, computed_at)"
                " VALUES (:n, :s, :p, :v, :at)"),
                [{"n": n, "s": s, "p": p, "v": forecast.version, "at": at} for (n, s), p in sorted(priced.items())])
    result = BidPriceRefresh(
        forecast_version=forecast.version if forecast else 0, horizon_left=round(left, 4),
        positions_priced=len(prices), scarce_positions=len(priced), seconds=round(time.perf_counter() - started, 3))
    get_logger().info("routing.bid_prices_refreshed", **result.model_dump())
    return result
