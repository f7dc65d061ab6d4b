"""Activities: the only place the order lifecycle touches Postgres and external systems."""

from activities.registry import NodalActivities

__all__ = ["NodalActivities"]
