"""Outbound events: the catalogue, the outbox they are written to in the transaction of the change they describe,
the subscriptions (webhooks) and their signed deliveries, the channel stock feeds, and carrier tracking scans."""
