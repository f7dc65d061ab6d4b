"""Schemathesis hooks and checks beyond its own (loaded by test_fuzz.py through SCHEMATHESIS_HOOKS).

Every call goes out under one of the roles' keys, drawn from the run's seed; half of the bodies are made to name
the seeded catalog (its SKUs, postal codes, channel), so orders are placed, held and promised for
real and the stateful phase follows them (api/links.py) to their changes, fulfillments and returns."""

from __future__ import annotations

import json
import os
import random
import zlib

import schemathesis

KEYS: list[tuple[str, str]] = json.loads(os.environ.get("NODAL_FUZZ_KEYS", "[]"))
CATALOG: dict = json.loads(os.environ.get("NODAL_FUZZ_CATALOG", "{}"))
SEED = int(os.environ.get("NODAL_FUZZ_SEED", "0"))
# Mostly keys that may act (so sequences go on), the others often enough to test every refusal.
WEIGHTS = {"admin": 5, "client": 4, "support": 2, "partner": 2, "client_other": 1, "partner_other": 1}
_roles = random.Random(SEED)


@schemathesis.check
def a_4xx_says_what_is_wrong(ctx, response, case):
    """Every refusal carries a reason a client can act on: {"detail": ...}, not an empty body."""
    if 400 <= response.status_code < 500:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        assert detail, f"{response.status_code} without a detail: {response.text[:200]}"


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if KEYS:
        roles, weights = zip(*((r, WEIGHTS.get(r, 1)) for r, _ in KEYS))
        role = _roles.choices(roles, weights)[0]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {dict(KEYS)[role]}"}
    # Every phase passes here (generation hooks miss the coverage phase): half of the bodies name the catalog,
    # which half decided by the body itself, so a shrunk or replayed case is made the same way.
    body = case.body
    if CATALOG and isinstance(body, dict) and not zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode()) % 2:
        case.body = _realistic(body, random.Random(zlib.crc32(repr(body).encode())))


def _realistic(body: dict, r: random.Random) -> dict:
    out = dict(body)
    if "external_id" in out:  # a new order, not the same one again
        out["external_id"] = f"fuzz-{r.randrange(1 << 40):x}"
    if "channel" in out:
        out["channel"] = CATALOG["channel"]
    if isinstance(out.get("destination"), dict):
        out["destination"] = {"postal_code": r.choice(CATALOG["postal_codes"])}
    if isinstance(out.get("customer"), dict):
        out["customer"] = {"id": f"fuzz-{r.randrange(100)}"}
    if isinstance(out.get("lines"), list):
        out["lines"] = [_line(l, i, r) if isinstance(l, dict) else l for i, l in enumerate(out["lines"][:5])]
    return out


def _line(line: dict, i: int, r: random.Random) -> dict:
    out = dict(line)
    if "sku" in out:
        out["sku"] = r.choice(CATALOG["skus"])
    if "qty" in out:
        out["qty"] = r.randint(1, 3)
    if "line_id" in out:
        out["line_id"] = f"L{i + 1}"
    if "unit_price" in out:
        out["unit_price"] = "10.00"
    if "delivery" in out:
        out["delivery"] = {"method": "ship_standard", "address": {"postal_code": r.choice(CATALOG["postal_codes"])}}
    return out


TALLY = os.environ.get("NODAL_FUZZ_TALLY")


@schemathesis.hook
def after_call(ctx, case, response):
    """Who asked what and what it got, for the test to see how far the run reached (NODAL_FUZZ_TALLY: JSON lines)."""
    if TALLY:
        key = (case.headers or {}).get("Authorization", "").removeprefix("Bearer ")
        role = next((r for r, k in KEYS if k == key), "none")
        with open(TALLY, "a") as f:
            f.write(json.dumps([role, case.method.upper(), case.operation.path, response.status_code]) + "\n")
