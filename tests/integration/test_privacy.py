"""A failed statement's error names the statement, never the customer's data bound into it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.integration


async def test_database_errors_carry_no_bound_personal_data(db):
    email, street = "privacy.probe@example.org", "12 Probe Street"
    with pytest.raises(DBAPIError) as failed:
        async with db.engine.connect() as conn:
            await conn.execute(text("INSERT INTO no_such_table (email, street) VALUES (:email, :street)"),
                               {"email": email, "street": street})
    said = str(failed.value)
    assert "no_such_table" in said, said  # the error still says what failed
    assert email not in said and street not in said, said


async def test_a_constraint_violation_logged_with_its_traceback_keeps_the_customer_out(db, capfd):
    """PostgreSQL's DETAIL ("Failing row contains (…)") quotes the row whatever hide_parameters says; nested
    log fields, exception text and the standard library's loggers (the Temporal SDK's, uvicorn's) go through
    the same redaction as our own fields."""
    import logging

    import nodal.logging as nodal_logging

    email, street = "constraint.probe@example.org", "77 Probe Avenue"
    table = "privacy_probe"
    async with db.engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE IF NOT EXISTS {table} (email text, street text, qty int NOT NULL)"))
    with pytest.raises(DBAPIError) as failed:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO {table} (email, street, qty) VALUES (:e, :s, NULL)"),
                               {"e": email, "s": street})
    assert email in str(failed.value), "the probe must carry the row (else this test proves nothing)"

    nodal_logging._configured = False
    nodal_logging.configure_logging("INFO", json=True)
    log = nodal_logging.get_logger(order_id="ORD-PRIVACY")
    try:
        raise failed.value
    except DBAPIError:
        log.exception("read_model.write_failed")
    log.info("nested", detail={"customer": {"email": email}, "lines": [{"address": {"line1": street}}],
                               "note": f"mail {email}"})
    logging.getLogger("temporalio.activity").warning("Completing activity as failed: %s", failed.value)
    out = capfd.readouterr().err
    assert "ORD-PRIVACY" in out and "read_model.write_failed" in out and "Completing activity" in out, out
    assert email not in out and street not in out, out
