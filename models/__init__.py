"""Tables (``models.tables``, Postgres only) and messages (``models.messages``, the workflow boundary).

Workflows import ``models.messages`` and ``models.status`` only; never the tables.
"""
