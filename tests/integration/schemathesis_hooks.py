"""Schemathesis checks beyond its own (loaded by test_fuzz.py through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.check
def a_4xx_says_what_is_wrong(ctx, response, case):
    """Every refusal carries a reason a client can act on: {"detail": ...}, not an empty body."""
    if 400 <= response.status_code < 500:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        assert detail, f"{response.status_code} without a detail: {response.text[:200]}"
