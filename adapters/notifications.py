"""Customer notifications (email/SMS provider): one message per idempotency key."""

from __future__ import annotations

from typing import Any, Protocol

from adapters.base import SimulatedSystem


class Notifier(Protocol):
    async def send(self, key: str, order_id: str, event: str, detail: dict[str, Any]) -> dict: ...


class SimulatedNotifier(SimulatedSystem):
    system = "notifications"

    async def send(self, key: str, order_id: str, event: str, detail: dict[str, Any]) -> dict:
        async def produce() -> dict:
            # The provider would render a template for the customer here; we keep what was sent.
            return {"order_id": order_id, "event": event, "detail": detail, "message_id": f"msg-{key}"}

        return await self._idempotent(key, produce)
