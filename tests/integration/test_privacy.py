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
