"""The order workflow, by concern: workflow.py reads the order's life; book.py holds its state and status
ladder; rules.py the checks; sourcing, changes, events, returns, money and mirror the work."""

from workflows.order.workflow import OrderWorkflow

__all__ = ["OrderWorkflow"]
