"""Inventory: available-to-sell arithmetic (``arithmetic``) and the Postgres-backed service (``service``)."""
