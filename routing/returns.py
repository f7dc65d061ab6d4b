"""Return routing: where a shipped-back return goes, by the routing rules' return routes (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from models.status import takes_returns
from routing.geo import haversine_km
from routing.rules import ReturnRoute


@dataclass(frozen=True)
class ReturnSite:
    node_id: str
    type: str
    lat: float
    lon: float
    capabilities: tuple[str, ...] = ()
    enabled: bool = True

    def takes_returns(self) -> bool:
        return self.enabled and takes_returns(self.type, self.capabilities)


def route_return(origin: ReturnSite, routes: dict, sites: list[ReturnSite],
                 customer: Optional[tuple[float, float]]) -> tuple[str, str, str]:
    """(node_id, rule, why) for a return of units ``origin`` shipped. ``routes`` is the rules' return_routes."""
    route: ReturnRoute = routes.get(origin.type) or ReturnRoute(to="origin")
    if route.to == "node":
        named = next((s for s in sites if s.node_id == route.node_id), None)
        if named is not None and named.takes_returns():
            return named.node_id, "node", f"{origin.type} returns go to {named.node_id} (routing rules)"
        why = f"{route.node_id} cannot take returns now"
    elif route.to == "nearest":
        why = f"{origin.type} returns go to the nearest return centre"
        where = customer or (origin.lat, origin.lon)
        open_sites = sorted((haversine_km(where[0], where[1], s.lat, s.lon), s.node_id)
                            for s in sites if s.takes_returns() and s.node_id != origin.node_id)
        if open_sites:
            return open_sites[0][1], "nearest", f"{why}: {open_sites[0][1]}, {open_sites[0][0]:.0f} km from the customer"
        why += ", and none takes returns"
    else:
        return origin.node_id, "origin", f"{origin.type} returns go back to the node that shipped them"
    return origin.node_id, "origin", f"{why}: back to {origin.node_id}"
