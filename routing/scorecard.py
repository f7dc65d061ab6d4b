"""Partner scorecards: how reliably a node turns released work into shipped parcels.

Computed from the fulfillments read model (routing/store.py: load_scorecards); the routing rules
set the floors below which a node is flagged for offboarding, and the per-unit penalty by which an
unreliable partner gets less work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Scorecard:
    fulfillments: int = 0
    acceptance_rate: Optional[float] = None  # accepted / (accepted + rejected + timed out)
    fill_rate: Optional[float] = None  # units found at pick / units asked, over picked work
    on_time_ship_rate: Optional[float] = None  # shipped by the ship-by time / shipped with one
    return_rate: Optional[float] = None  # returns / delivered fulfillments
    avg_minutes_to_accept: Optional[float] = None
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    def reliability(self) -> float:
        """The chance a unit sent here ships on time: 1 for a node without history."""
        r = 1.0
        for rate in (self.acceptance_rate, self.fill_rate, self.on_time_ship_rate):
            if rate is not None:
                r *= rate
        return r

    def below(self, floors: dict[str, float], min_fulfillments: int) -> list[str]:
        """The metrics under their floor (judged only once the node has enough history)."""
        if self.fulfillments < min_fulfillments:
            return []
        return sorted(m for m, floor in floors.items()
                      if getattr(self, m) is not None and getattr(self, m) < floor)

    def view(self, floors: dict[str, float], min_fulfillments: int) -> dict:
        flagged = self.below(floors, min_fulfillments)
        return {"fulfillments": self.fulfillments, "acceptance_rate": self.acceptance_rate,
                "fill_rate": self.fill_rate, "on_time_ship_rate": self.on_time_ship_rate,
                "return_rate": self.return_rate, "avg_minutes_to_accept": self.avg_minutes_to_accept,
                "rejection_reasons": self.rejection_reasons, "below_floor": flagged,
                "flagged_for_offboarding": bool(flagged)}
