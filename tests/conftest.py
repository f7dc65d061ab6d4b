"""Session-wide real components: embedded PostgreSQL and the Temporal dev server (time skipping v2)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from launcher.skipping import temporal_binary  # noqa: F401 (tests import it from here)


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory):
    from nodal.db import embedded_postgres
    from nodal.migrate import upgrade

    # One database per test process (pytest-xdist's gw0, gw1, ...).
    fixed = os.environ.get("NODAL_TEST_PG")
    where = Path(fixed) / os.environ.get("PYTEST_XDIST_WORKER", "main") if fixed else tmp_path_factory.mktemp("pg")
    server = embedded_postgres(where, keep_running=False)
    url = server.get_uri()
    upgrade(url)
    yield url
    # Stopped here, not at exit: the hard exit below skips pgserver's atexit hook and would leave it running.
    server.cleanup()


def pytest_unconfigure(config):
    # The Temporal SDK's runtime can abort at interpreter exit after a green run (sdk-python #300):
    # leave with pytest's own status instead.
    if os.environ.get("NODAL_TEST_HARD_EXIT", "1") == "1" and hasattr(config, "_nodal_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._nodal_exitstatus)


def pytest_sessionfinish(session, exitstatus):
    session.config._nodal_exitstatus = int(exitstatus)
