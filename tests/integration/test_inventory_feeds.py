"""Partner feeds: bulk CSV import through the CLI, the ledger, stock-level messaging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Api, make_network

pytestmark = pytest.mark.integration


def nodal(pg_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NODAL_DATABASE_URL": pg_url, "NODAL_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def positions(api: Api, node: str) -> dict[str, tuple[int, int]]:
    return {i["sku"]: (i["on_hand"], i["safety_stock"]) for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}


async def test_bulk_import_is_all_or_nothing(api: Api, pg_url, tmp_path: Path):
    net = await make_network(api, stock={"DC-N": {"SKU1": 4}})
    n, s = net.node, net.skus
    good = tmp_path / "good.csv"
    good.write_text(f"node,sku,on_hand,safety_stock\n{n('DC-N')},{s[0]},40,2\n{n('DC-N')},{s[1]},7,\n"
                    f"{n('DC-S')},{s[2]},0,1\n\n\n")  # blank lines at the end are not rows
    r = nodal(pg_url, "inventory", "import", str(good))
    assert r.returncode == 0, r.stderr
    assert "imported 3 positions (2 new, 2 changed on hand)" in r.stdout
    assert await positions(api, n("DC-N")) == {s[0]: (40, 2), s[1]: (7, 0)}
    ledger = await api.ok("GET", f"/inventory/{n('DC-N')}/{s[0]}/ledger")
    assert [(e["reason"], e["on_hand_delta"]) for e in ledger["entries"]] == [("import", 36), ("snapshot", 4)]
    assert ledger["position"] == {"on_hand": 40, "reserved": 0, "safety_stock": 2, "available": 38}

    for body, why in [
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\n{n('DC-N')},{s[1]},x\n", "line 3: on_hand must be a whole number"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\nNOPE,{s[1]},2\n", "line 3: unknown node NOPE"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\n{n('DC-N')},nope,2\n", "line 3: unknown sku nope"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\n{n('DC-N')},{s[1]},1\n{n('DC-N')},{s[0]},2\n",
         f"line 4: {n('DC-N')}/{s[0]} appears twice"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\n\n{n('DC-N')},{s[1]},2\n", "line 3: empty line"),
        (f"node,sku,on_hand\n{n('DC-N')},,1\n", "line 2: sku must not be empty"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},99999999999\n", "line 2: on_hand is out of range"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},1\n{n('DC-N')},{s[1]}\n", "line 3: expected 3 fields"),
        (f"node,sku\n{n('DC-N')},{s[0]}\n", "line 1: header"),
        (f"node,sku,on_hand\n{n('DC-N')},{s[0]},-4\n", "line 2: on_hand must not be negative"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        r = nodal(pg_url, "inventory", "import", str(bad))
        assert r.returncode == 1 and why in r.stderr and "nothing was imported" in r.stderr, (why, r.stderr)
    assert await positions(api, n("DC-N")) == {s[0]: (40, 2), s[1]: (7, 0)}


async def test_ledger_explains_an_order_and_partners_see_only_their_node(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 10}})
    node, sku = net.node("DC-N"), net.skus[0]
    await api.ok("POST", "/inventory/adjustments", json=[
        {"event_id": f"{net.prefix}-cycle-1", "node_id": node, "sku": sku, "delta": -3, "reason": "cycle count"}])
    ledger = await api.ok("GET", f"/inventory/{node}/{sku}/ledger?limit=1")
    # A feed's event id, in its node's namespace (never one of the system's own ids).
    assert ledger["entries"][0]["event_id"] == f"feed:{node}:{net.prefix}-cycle-1" and ledger["next_before_id"]
    older = await api.ok("GET", f"/inventory/{node}/{sku}/ledger?before_id={ledger['next_before_id']}")
    assert [e["reason"] for e in older["entries"]] == ["snapshot"]
    other = await api.key("partner", node_id=net.node("DC-S"))
    assert (await api.call("GET", f"/inventory/{node}/{sku}/ledger", key=other)).status_code == 403
    assert (await api.call("GET", f"/inventory/{node}/nope/ledger")).status_code == 404


async def test_stock_levels_for_customer_messaging(api: Api):
    net = await make_network(api, stock={"DC-N": {"SKU1": 20, "SKU2": 3, "SKU3": 0}})
    s = net.skus
    await api.ok("PUT", f"/skus/{s[0]}", json={"name": "big threshold", "low_stock_threshold": 25})
    avail = await api.ok("GET", f"/availability?skus={','.join(s)}", key=net.client_key)
    levels = {x["sku"]: (x["available"], x["stock_level"]) for x in avail["skus"]}
    assert levels == {s[0]: (20, "low"), s[1]: (3, "low"), s[2]: (0, "out")}
    await api.ok("PUT", f"/skus/{s[0]}", json={"name": "default threshold"})
    avail = await api.ok("GET", f"/availability?skus={s[0]}", key=net.client_key)
    assert avail["skus"][0]["stock_level"] == "in_stock"


async def test_safety_stock_defaults_by_node_type_and_category(api: Api, pg_url, tmp_path: Path):
    net = await make_network(api, stock={})
    s = net.skus
    await api.ok("PUT", f"/skus/{s[0]}", json={"name": "a jacket", "category": f"{net.prefix}-jacket"})
    try:
        await api.ok("PUT", "/safety-stock-defaults", json={"node_types": {"store": 2},
                                                            "categories": {f"{net.prefix}-jacket": 5}})
        store, dc = net.node("STORE"), net.node("DC-N")
        await api.ok("PUT", f"/inventory/{store}", json={"as_of": "2026-02-01T00:00:00Z", "items": [
            {"sku": s[0], "on_hand": 10}, {"sku": s[1], "on_hand": 10}, {"sku": s[2], "on_hand": 10, "safety_stock": 0}]})
        csv_file = tmp_path / "dc.csv"
        csv_file.write_text(f"node,sku,on_hand\n{dc},{s[0]},10\n{dc},{s[1]},10\n")
        assert nodal(pg_url, "inventory", "import", str(csv_file)).returncode == 0
        # The larger default wins; an explicit safety stock (even 0) is the position's own.
        assert await positions(api, store) == {s[0]: (10, 5), s[1]: (10, 2), s[2]: (10, 0)}
        assert await positions(api, dc) == {s[0]: (10, 5), s[1]: (10, 0)}
        avail = await api.ok("GET", f"/availability?skus={s[0]}")
        assert avail["skus"][0]["available"] == 10  # (10 − 5) at each node
        # Changing the defaults moves every position that follows them, and only those.
        await api.ok("PUT", "/safety-stock-defaults", json={"node_types": {"store": 1}})
        assert await positions(api, store) == {s[0]: (10, 1), s[1]: (10, 1), s[2]: (10, 0)}
        assert await positions(api, dc) == {s[0]: (10, 0), s[1]: (10, 0)}
        r = await api.call("PUT", "/safety-stock-defaults", json={"node_types": {"store": -1}})
        assert r.status_code == 422
    finally:
        await api.ok("PUT", "/safety-stock-defaults", json={})


async def test_returned_units_by_disposition_and_inspection(api: Api, temporal_env, settings):
    from tests.integration.flow import fulfillment, order_status, place, release, walk

    net = await make_network(api, stock={"DC-N": {"SKU1": 10}})
    node, sku = net.node("DC-N"), net.skus[0]
    oid = (await place(api, net, [("SKU1", 3)]))["order_id"]
    await release(api, temporal_env, oid, settings)
    partner = await api.key("partner", node_id=node)
    await walk(api, await fulfillment(api, oid, node), partner)
    await order_status(api, oid, "delivered")
    ret = await api.ok("POST", f"/orders/{oid}/returns", key=net.client_key, expect=201,
                       json={"lines": [{"line_id": "L1", "qty": 3}], "reason": "wrong size"})
    # A return is received line by line; one return here, all three units pending inspection.
    await api.ok("POST", f"/returns/{ret['return_id']}/receive", key=partner,
                 json={"lines": [{"line_id": "L1", "qty": 3, "disposition": "pending_inspection"}]})
    item = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}[sku]
    assert (item["on_hand"], item["pending_inspection"], item["damaged"]) == (7, 3, 0)
    inspect = f"/inventory/{node}/{sku}/inspect"
    await api.ok("POST", inspect, key=partner, json={"event_id": f"{oid}-i1", "qty": 2, "disposition": "sellable"})
    await api.ok("POST", inspect, key=partner, json={"event_id": f"{oid}-i1", "qty": 2, "disposition": "sellable"})
    await api.ok("POST", inspect, key=partner, json={"event_id": f"{oid}-i2", "qty": 1, "disposition": "damaged"})
    r = await api.call("POST", inspect, key=partner, json={"event_id": f"{oid}-i3", "qty": 1, "disposition": "damaged"})
    assert r.status_code == 409
    item = {i["sku"]: i for i in (await api.ok("GET", f"/inventory/{node}"))["items"]}[sku]
    assert (item["on_hand"], item["pending_inspection"], item["damaged"], item["available"]) == (9, 0, 1, 9)
    ledger = (await api.ok("GET", f"/inventory/{node}/{sku}/ledger"))["entries"]
    assert [(e["disposition"], e["on_hand_delta"]) for e in ledger[:5]] == [
        ("damaged", 1), ("pending_inspection", -1), ("sellable", 2), ("pending_inspection", -2),
        ("pending_inspection", 3)]


def test_stock_level_sql_says_what_python_says(pg_url):
    import psycopg

    from inventory.arithmetic import stock_level, stock_level_sql

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for available in range(-1, 8):
            for threshold in (0, 3, 5):
                sql = conn.execute(f"SELECT {stock_level_sql('%s', '%s')}", (available, available, threshold)).fetchone()[0]
                assert sql == stock_level(available, threshold), (available, threshold)
