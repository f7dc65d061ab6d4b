"""The migrations build exactly the schema the models describe (a model change without its migration fails)."""

from __future__ import annotations

import pytest
from alembic import command

from nodal.migrate import alembic_config

pytestmark = pytest.mark.integration


def test_models_and_migrations_agree(pg_url):
    command.check(alembic_config(pg_url))  # raises when autogenerate would write an operation
