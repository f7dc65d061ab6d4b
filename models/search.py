"""The search attributes of order workflows: what support filters on in the Temporal UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
FULFILLMENT_NODES = SearchAttributeKey.for_keyword_list("FulfillmentNodes")
PROMISED_BY = SearchAttributeKey.for_datetime("PromisedBy")
AT_RISK = SearchAttributeKey.for_bool("AtRisk")  # a fulfillment missed its ship-by or promised delivery
SEARCH_ATTRIBUTES = [ORDER_STATUS, CHANNEL, CUSTOMER_ID, FULFILLMENT_NODES, PROMISED_BY, AT_RISK]
