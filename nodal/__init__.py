"""Nodal: a distributed order management engine."""

__version__ = "0.1.0"
