"""Channel views of the common pool: read once per request, applied by routing, reservations and the API."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class ChannelView:
    channel: str
    node_types: frozenset[str] = field(default_factory=frozenset)  # empty: every type
    exclude_nodes: frozenset[str] = field(default_factory=frozenset)
    buffer_units: int = 0
    buffer_pct: float = 0.0

    def excludes(self, node_id: str, node_type: str) -> str | None:
        """Why this channel may not sell from a node, or None."""
        if node_id in self.exclude_nodes:
            return f"not sold on channel {self.channel}"
        if self.node_types and node_type not in self.node_types:
            return f"channel {self.channel} does not sell from a {node_type}"
        return None

    def params(self) -> dict[str, float]:
        return {"buffer_units": self.buffer_units, "buffer_pct": self.buffer_pct}


async def load_channel_view(conn: AsyncConnection, channel: str | None) -> ChannelView:
    """The channel's view; a channel without one sees the whole pool."""
    if not channel:
        return ChannelView(channel="")
    row = (await conn.execute(text(
        "SELECT node_types, exclude_nodes, buffer_units, buffer_pct FROM channel_views WHERE channel = :c"),
        {"c": channel})).first()
    if row is None:
        return ChannelView(channel=channel)
    return ChannelView(channel, frozenset(row.node_types or []), frozenset(row.exclude_nodes or []),
                       row.buffer_units, row.buffer_pct)
