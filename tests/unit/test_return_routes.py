"""Return routing (routing/returns.py): a return shipped back goes where the routing rules' return routes say."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from routing.returns import ReturnSite, route_return
from routing.rules import ReturnRoute, RoutingRules

CUSTOMER = (41.88, -87.63)  # Chicago
VENDOR = ReturnSite("VENDOR", "dropship", 40.71, -74.00, ("ship",))
NEAR_DC = ReturnSite("DC-CHI", "dc", 41.60, -88.10, ("ship",))
FAR_DC = ReturnSite("DC-DAL", "dc", 32.78, -96.80, ("ship",))
STORE = ReturnSite("ST-CHI", "store", 41.8837, -87.6324, ("ship", "pickup"))
COUNTER = ReturnSite("ST-EVA", "store", 42.05, -87.68, ("ship", "returns"))
SITES = [VENDOR, NEAR_DC, FAR_DC, STORE, COUNTER]


def test_drop_ship_returns_go_to_the_nearest_return_centre_by_default():
    routes = RoutingRules().return_routes
    node, rule, why = route_return(VENDOR, routes, SITES, CUSTOMER)
    # A store without the returns capability takes none; the one with it is a return centre too.
    assert (node, rule) == ("ST-EVA", "nearest") and "km from the customer" in why
    node, _, _ = route_return(VENDOR, routes, [VENDOR, NEAR_DC, FAR_DC, STORE], CUSTOMER)
    assert node == "DC-CHI"


def test_other_node_types_take_their_own_returns_back_unless_a_rule_says():
    routes = RoutingRules().return_routes
    assert route_return(FAR_DC, routes, SITES, CUSTOMER)[:2] == ("DC-DAL", "origin")
    routes = RoutingRules(return_routes={"dc": ReturnRoute(to="nearest")}).return_routes
    assert route_return(FAR_DC, routes, SITES, CUSTOMER)[0] == "ST-EVA"
    # And the rule can send the vendor's own returns back to it.
    routes = RoutingRules(return_routes={"dropship": ReturnRoute(to="origin")}).return_routes
    assert route_return(VENDOR, routes, SITES, CUSTOMER)[:2] == ("VENDOR", "origin")


def test_a_named_return_centre_unless_it_cannot_take_them():
    routes = {"dropship": ReturnRoute(to="node", node_id="DC-DAL")}
    assert route_return(VENDOR, routes, SITES, CUSTOMER)[:2] == ("DC-DAL", "node")
    closed = [ReturnSite("DC-DAL", "dc", 32.78, -96.80, ("ship",), enabled=False), VENDOR]
    node, rule, why = route_return(VENDOR, routes, closed, CUSTOMER)
    assert (node, rule) == ("VENDOR", "origin") and "cannot take returns" in why
    # Nowhere to go nearest: back where it came from, saying why.
    node, rule, why = route_return(VENDOR, {"dropship": ReturnRoute(to="nearest")}, [VENDOR, STORE], CUSTOMER)
    assert (node, rule) == ("VENDOR", "origin") and "none takes returns" in why


def test_a_rule_names_its_node_exactly_when_it_sends_to_one():
    with pytest.raises(ValidationError):
        ReturnRoute(to="node")
    with pytest.raises(ValidationError):
        ReturnRoute(to="origin", node_id="DC-DAL")
