"""Deterministic orchestration: no clock, randomness, database or heavy CPU here; all I/O is in activities."""
