"""What `nodal dev` shows in a terminal: where everything is, and the orders moving, on one screen that stays put
(refreshed every two seconds) instead of log lines scrolling past; the logs go to NODAL_HOME/logs/nodal.log."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy import text

from api.routes.ops import store_kpis
from models.status import OrderStatus

REFRESH_S = 2.0
LATEST = 8


class LogTally:
    """Warnings and errors in the log file so far (read on from where it stopped)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.levels, self.last_problem = path, 0, Counter(), ""

    def read(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = entry.get("level", "")
            if level in ("warning", "error", "critical"):
                self.levels[level] += 1
                self.last_problem = f"{level}: {entry.get('event', '')}"[:100]


def pickup_line(k: dict[str, Any]) -> str:
    """The store KPIs: pickup ready-time and how long a customer who checked in waits at the curb."""
    minutes = lambda v: "-" if v is None else f"{v:g} min"  # noqa: E731
    expired = "-" if k["expired_rate"] is None else f"{k['expired_rate']:.0%}"
    return (f"Pickups {k['pickups']} · collected {k['collected']} · ready in {minutes(k['median_ready_minutes'])}"
            f" (median) · arrival to collection {minutes(k['median_arrival_to_collection_minutes'])}"
            f" ({k['curbside_arrivals']} check-ins) · expired {expired}")


class Board:
    def __init__(self, db, header: list[tuple[str, str]], log_file: Path, console: Console, demo: Any = None):
        self.db, self.header, self.console, self.demo = db, header, console, demo
        self.log = LogTally(log_file)
        self.log_file = log_file

    async def snapshot(self) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            counts = dict((await conn.execute(text("SELECT status, COUNT(*) FROM orders GROUP BY status"))).all())
            at_risk = (await conn.execute(text("SELECT COUNT(*) FROM orders WHERE at_risk"))).scalar_one()
            latest = (await conn.execute(text(
                "SELECT order_id, event, at FROM timeline_events ORDER BY id DESC LIMIT :n"), {"n": LATEST})).all()
            counter = await store_kpis(conn)
        self.log.read()
        return {"counts": counts, "at_risk": at_risk, "latest": latest, "counter": counter}

    def render(self, snap: Optional[dict[str, Any]]) -> Group:
        where = Table.grid(padding=(0, 2))
        for name, value in self.header:
            where.add_row(Text(name, style="bold"), value)
        parts: list[Any] = [Panel(where, title="[bold green]Nodal is up[/]", title_align="left")]
        if snap is None:
            return Group(*parts)
        orders = Table(title="Orders by status", title_justify="left", show_edge=False)
        orders.add_column("status")
        orders.add_column("orders", justify="right")
        for status in OrderStatus:
            if snap["counts"].get(status.value):
                orders.add_row(status.value, str(snap["counts"][status.value]))
        total = sum(snap["counts"].values())
        orders.add_row("[bold]all[/]", f"[bold]{total}[/]")
        if snap["at_risk"]:
            orders.add_row("[red]at risk[/]", f"[red]{snap['at_risk']}[/]")
        events = Table(title="Latest events", title_justify="left", show_edge=False)
        for column in ("at (UTC)", "order", "event"):
            events.add_column(column)
        for r in snap["latest"]:
            events.add_row(r.at.astimezone(timezone.utc).strftime("%H:%M:%S"), r.order_id, r.event)
        if not snap["latest"]:
            events.add_row("", "[dim]no order yet[/]", "[dim]POST /orders, or nodal dev --demo[/]")
        row = Table.grid(padding=(0, 4))
        row.add_row(orders, events)
        parts.append(row)
        if snap.get("counter", {}).get("pickups"):
            parts.append(Text(pickup_line(snap["counter"])))
        levels = self.log.levels
        problems = ", ".join(f"{n} {level}(s)" for level, n in sorted(levels.items())) or "no warnings"
        footer = f"logs: {self.log_file}  ({problems}{'; last ' + self.log.last_problem if levels else ''})"
        if self.demo is not None:
            done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(self.demo.stats.items()))
            footer = f"demo: {self.demo.placed} orders placed" + (f" ({done})" if done else "") + "   " + footer
        parts.append(Text(footer, style="dim"))
        parts.append(Text(f"{datetime.now(timezone.utc):%H:%M:%S} UTC · Ctrl-C stops everything; starting again "
                          "resumes every order where it was.", style="dim"))
        return Group(*parts)

    async def run(self, stop: asyncio.Event) -> None:
        with Live(self.render(None), console=self.console, refresh_per_second=4, transient=False) as live:
            while not stop.is_set():
                try:
                    live.update(self.render(await self.snapshot()))
                except Exception as e:  # the database restarting: keep the board, say so
                    live.update(Group(self.render(None), Text(f"(status unavailable: {type(e).__name__})")))
                try:
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
                except asyncio.TimeoutError:
                    pass
