"""Logs carry order and fulfillment ids, never personal data."""

from __future__ import annotations

import json

from nodal.logging import PERSONAL_KEYS, _redact


def test_personal_fields_are_redacted_and_ids_kept():
    event = {"event": "order.placed", "order_id": "ORD-1", "fulfillment_id": "ORD-1-F1",
             "email": "jane@example.com", "address": {"line1": "1 Main St"}, "postal_code": "10001"}
    out = _redact(None, "info", dict(event))
    text = json.dumps(out)
    assert "jane@example.com" not in text and "Main St" not in text and "10001" not in text
    assert out["order_id"] == "ORD-1" and out["fulfillment_id"] == "ORD-1-F1"
    assert {"email", "address", "customer"} <= PERSONAL_KEYS


def test_personal_data_is_cut_from_nested_values_and_free_text():
    out = _redact(None, "error", {
        "event": "write failed for jane@example.com",
        "detail": {"customer": {"id": "c1"}, "lines": [{"address": {"line1": "1 Main St"}, "sku": "S1"}]},
        "exception": 'psycopg.errors.UniqueViolation: duplicate key\nDETAIL:  Key (email)=(jane@example.com) already '
                     'exists.\nDETAIL:  Failing row contains (42, 1 Main St, 10001, null).\n[SQL: INSERT ...]'})
    text = json.dumps(out)
    assert "jane@example.com" not in text and "Main St" not in text and "10001" not in text, text
    assert out["detail"]["lines"][0]["sku"] == "S1" and "[SQL: INSERT ...]" in out["exception"]
    assert "Key (email)=([redacted]) already exists" in out["exception"]
