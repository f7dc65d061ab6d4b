"""How the API's resources lead to one another, as OpenAPI links: from a placed order to reading, changing,
cancelling and returning it, from an order to its fulfillments and returns, from a hold to its release. A client
(or an SDK generated from the OpenAPI, or the fuzzer's stateful phase) follows the ids the answers carry."""

from __future__ import annotations

from typing import Any

ORDER = {"order_id": "$response.body#/order_id"}
FULFILLMENT = {"fulfillment_id": "$response.body#/fulfillments/0/fulfillment_id"}
RETURN_IN_ORDER = {"return_id": "$response.body#/returns/0/return_id"}
RETURN = {"return_id": "$response.body#/return_id"}
HOLD = {"hold_id": "$response.body#/hold_id"}

# (method, path, status) of the answer → link name → (method, path, parameters) of where it leads.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/orders", "201"): {
        "GetOrder": ("get", "/orders/{order_id}", ORDER),
        "ModifyOrder": ("patch", "/orders/{order_id}", ORDER),
        "CancelOrder": ("post", "/orders/{order_id}/cancel", ORDER),
        "ReorchestrateOrder": ("post", "/orders/{order_id}/reorchestrate", ORDER),
        "RequestReturn": ("post", "/orders/{order_id}/returns", ORDER),
    },
    ("get", "/orders/{order_id}", "200"): {
        "GetFulfillment": ("get", "/fulfillments/{fulfillment_id}", FULFILLMENT),
        "SignalMilestone": ("post", "/fulfillments/{fulfillment_id}/{milestone}", FULFILLMENT),
        "GetReturn": ("get", "/returns/{return_id}", RETURN_IN_ORDER),
        "ReceiveReturn": ("post", "/returns/{return_id}/receive", RETURN_IN_ORDER),
        "CancelOrder": ("post", "/orders/{order_id}/cancel", ORDER),
    },
    ("get", "/fulfillments", "200"): {
        "GetFulfillment": ("get", "/fulfillments/{fulfillment_id}", FULFILLMENT),
        "SignalMilestone": ("post", "/fulfillments/{fulfillment_id}/{milestone}", FULFILLMENT),
    },
    ("post", "/fulfillments/{fulfillment_id}/{milestone}", "200"): {
        "GetFulfillment": ("get", "/fulfillments/{fulfillment_id}", {"fulfillment_id": "$request.path.fulfillment_id"}),
        "NextMilestone": ("post", "/fulfillments/{fulfillment_id}/{milestone}",
                          {"fulfillment_id": "$request.path.fulfillment_id"}),
    },
    ("post", "/orders/{order_id}/returns", "201"): {
        "GetReturn": ("get", "/returns/{return_id}", RETURN),
        "ReceiveReturn": ("post", "/returns/{return_id}/receive", RETURN),
    },
    ("post", "/holds", "201"): {
        "GetHold": ("get", "/holds/{hold_id}", HOLD),
        "ReleaseHold": ("delete", "/holds/{hold_id}", HOLD),
    },
    ("post", "/api-keys", "201"): {
        "RevokeKey": ("delete", "/api-keys/{key_id}", {"key_id": "$response.body#/key_id"}),
    },
    ("put", "/nodes/{node_id}", "200"): {
        "GetNode": ("get", "/nodes/{node_id}", {"node_id": "$request.path.node_id"}),
        "ChangeNode": ("patch", "/nodes/{node_id}", {"node_id": "$request.path.node_id"}),
        "GetInventory": ("get", "/inventory/{node_id}", {"node_id": "$request.path.node_id"}),
    },
    **{("put", "/webhooks/{name}", status): {
        "ListDeliveries": ("get", "/webhooks/{name}/deliveries", {"name": "$request.path.name"}),
        "RotateSecret": ("post", "/webhooks/{name}/rotate-secret", {"name": "$request.path.name"}),
        "Replay": ("post", "/webhooks/{name}/replay", {"name": "$request.path.name"}),
        "Unsubscribe": ("delete", "/webhooks/{name}", {"name": "$request.path.name"}),
    } for status in ("200", "201")},
    ("put", "/channels/{channel}", "200"): {
        "GetChannelView": ("get", "/channels/{channel}", {"channel": "$request.path.channel"}),
        "GetChannelFeed": ("get", "/channels/{channel}/feed", {"channel": "$request.path.channel"}),
    },
    ("put", "/skus/{sku}", "200"): {
        "GetSku": ("get", "/skus/{sku}", {"sku": "$request.path.sku"}),
    },
}


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Write LINKS into a generated OpenAPI document (by the operations' own ids)."""
    paths = schema["paths"]
    for (method, path, status), links in LINKS.items():
        answer = paths[path][method]["responses"].setdefault(status, {"description": "Successful Response"})
        answer["links"] = {name: {"operationId": paths[to_path][to_method]["operationId"], "parameters": params}
                           for name, (to_method, to_path, params) in links.items()}
    return schema
