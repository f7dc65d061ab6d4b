"""GET /availability answered from this process's availability index and network memo: no database read per
request. The answer is the one the SQL path (api/routes/inventory.AVAILABILITY) builds, field for field.

Each SKU's node list is kept as JSON text until the SKU's positions, the protected stock, or the request's view of
the network change: the same hot SKUs are asked for far more often than their stock moves.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
from sqlalchemy import text

from inventory.arithmetic import stock_level
from inventory.channels import ChannelView, load_channel_view
from inventory.index import AvailabilityIndex, channel_ats
from models.status import NATIONAL_NODE_TYPES
from routing.store import memo, memo_many, node_rows, service_areas

_NATIONAL = frozenset(t.value for t in NATIONAL_NODE_TYPES)
_FRAGMENTS: "OrderedDict[tuple, tuple]" = OrderedDict()
_FRAGMENT_LIMIT = 50_000
_MASKS: dict[tuple, np.ndarray] = {}
_RANKS: dict[int, tuple[list[str], np.ndarray]] = {}

_SKU_INFO = text("SELECT sku, low_stock_threshold, preorder_release_date FROM skus WHERE sku = ANY(:s)")
# Supply is never stock; ``unclaimed`` is what is left for new backorders and preorders (as the SQL path says it).
_INCOMING = text("""
SELECT i.sku, CAST(json_agg(json_build_object(
    'node_id', i.node_id, 'qty', i.qty, 'eta', i.eta,
    'unclaimed', GREATEST(i.qty - COALESCE((SELECT SUM(c.qty) FROM supply_claims c
                                            WHERE c.supply_id = i.supply_id), 0), 0)) ORDER BY i.eta) AS text) AS list
FROM incoming_supply i WHERE i.sku = ANY(:s) AND i.qty > 0 GROUP BY i.sku
""")


async def _eligible(conn, view: ChannelView, postal_code: Optional[str], seconds: float) -> frozenset[str]:
    """The nodes this channel sells from (for this destination: national node types and its mapped stores)."""
    async def load() -> frozenset[str]:
        rows = await node_rows(conn, seconds)
        mapped: dict = {}
        if postal_code:
            mapped = (await memo_many(conn, "areas", [postal_code], seconds,
                                      lambda codes: service_areas(conn, codes)))[postal_code] or {}
        return frozenset(
            r.node_id for r in rows
            if r.enabled and r.node_id not in view.exclude_nodes and (not view.node_types or r.type in view.node_types)
            and (not postal_code or r.type in _NATIONAL or r.node_id in mapped))
    return await memo(conn, f"eligible:{view.channel}:{postal_code}", seconds, load)


def _mask(index: AvailabilityIndex, eligible: frozenset[str]) -> np.ndarray:
    ids = index.positions.node_ids
    key = (eligible, len(ids))
    mask = _MASKS.get(key)
    if mask is None:
        if len(_MASKS) > 1000:
            _MASKS.clear()
        mask = _MASKS[key] = np.fromiter((n in eligible for n in ids), dtype=bool, count=len(ids))
    return mask


def _ranks(index: AvailabilityIndex) -> tuple[list[str], np.ndarray]:
    """Each node column's node id as JSON, and its place in node id order (answers list nodes by id)."""
    ids = index.positions.node_ids
    hit = _RANKS.get(len(ids))
    if hit is None:
        order = sorted(range(len(ids)), key=ids.__getitem__)
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        _RANKS.clear()
        hit = _RANKS[len(ids)] = ([json.dumps(i) for i in ids[:len(order)]], rank)
    return hit


def _nodes(index: AvailabilityIndex, sku: str, view: ChannelView, tier: Optional[str],
           eligible: frozenset[str]) -> tuple[int, str]:
    """(available, the node list as JSON) of one SKU over the eligible nodes."""
    row = index.positions.rows.get(sku)
    if row is None:
        return 0, "[]"
    key = (sku, eligible, view.buffer_units, view.buffer_pct, tier)
    hit = _FRAGMENTS.get(key)
    if hit is not None and hit[0] is row and hit[1] == row.version and hit[2] == index.protected_version:
        _FRAGMENTS.move_to_end(key)
        return hit[3], hit[4]
    version, protected_version = row.version, index.protected_version
    ats = channel_ats(row, view, index.protected_for_others(sku, row, tier))
    names, rank = _ranks(index)
    keep = _mask(index, eligible)[row.nodes]
    cols = row.nodes[keep]
    order = np.argsort(rank[cols], kind="stable")
    cols = cols[order]
    on_hand, reserved, safety, units = (a[keep][order].tolist() for a in (row.on_hand, row.reserved, row.safety, ats))
    nodes = "[" + ", ".join(
        f'{{"node_id": {names[c]}, "on_hand": {o}, "reserved": {r}, "safety_stock": {s}, "available": {a}}}'
        for c, o, r, s, a in zip(cols.tolist(), on_hand, reserved, safety, units)) + "]"
    available = int(sum(units))
    _FRAGMENTS[key] = (row, version, protected_version, available, nodes)
    if len(_FRAGMENTS) > _FRAGMENT_LIMIT:
        _FRAGMENTS.popitem(last=False)
    return available, nodes


async def stock_answer(conn, index: AvailabilityIndex, skus: list[str], postal_code: Optional[str],
                       channel: Optional[str], tier: Optional[str], low: int, seconds: float) -> str:
    """The availability answer's JSON (without its freshness)."""
    view = await memo(conn, f"channel:{channel}", seconds, lambda: load_channel_view(conn, channel))
    eligible = await _eligible(conn, view, postal_code, seconds)

    async def sku_info(keys: list) -> dict:
        return {r.sku: (r.low_stock_threshold, r.preorder_release_date)
                for r in (await conn.execute(_SKU_INFO, {"s": keys})).all()}

    async def incoming(keys: list) -> dict:
        return {r.sku: r.list for r in (await conn.execute(_INCOMING, {"s": keys})).all()}

    info = await memo_many(conn, "sku_info", skus, seconds, sku_info)
    # Keyed by the index's supply version: a change of supply or its claims anywhere is a new key.
    supply = await memo_many(conn, f"incoming:{index.supply_version}", skus, seconds, incoming)
    parts = []
    for sku in skus:
        available, nodes = _nodes(index, sku, view, tier, eligible)
        threshold, preorder = info.get(sku) or (None, None)
        parts.append(
            f'{{"sku": {json.dumps(sku)}, "available": {available}, "nodes": {nodes}, '
            f'"stock_level": "{stock_level(available, low if threshold is None else threshold)}", '
            f'"preorder_release_date": {json.dumps(preorder.isoformat() if preorder else None)}, '
            f'"incoming": {supply.get(sku) or "[]"}}}')
    head: dict[str, Any] = {"postal_code": postal_code, "channel": channel}
    return json.dumps(head)[:-1] + ', "skus": [' + ", ".join(parts) + "]}"
