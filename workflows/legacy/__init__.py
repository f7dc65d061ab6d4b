"""Workflow types kept registered, frozen, for the orders that started on them (see order_v1)."""
