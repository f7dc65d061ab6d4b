"""External systems behind protocols: carriers, payments, notifications.

Each has a simulated implementation that behaves like the real thing: it takes time, fails on
demand (``NODAL_ADAPTER_FAILURE_RATE``), and remembers idempotency keys durably, so a retried call
returns the first answer instead of charging, labelling or messaging twice.
"""
