"""Schema migrations (Alembic), run programmatically by `nodal dev`, `nodal migrate` and the tests."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

from nodal.db import sqlalchemy_url

MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic keeps the running migration's context in a module global: two upgrades at once in one process (stacks
# started side by side in threads, as the chaos harness does) would run on each other's connections.
_ONE_AT_A_TIME = threading.Lock()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    with _ONE_AT_A_TIME:
        command.upgrade(alembic_config(url), revision)
