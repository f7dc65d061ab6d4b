"""A whole Nodal stack as separate processes, so a benchmark or a chaos run can break any piece of it.

PostgreSQL (pgserver's binaries, its own data directory), the Temporal dev server (on its own SQLite
file), N workers and the API (uvicorn) — each a real process with its log under ``home``. Pieces can be
SIGKILLed, stopped and started again on the same data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from launcher.dev import port_open, temporal_command  # noqa: E402
from nodal.ports import free_port  # noqa: E402
from nodal.settings import Settings  # noqa: E402

ADMIN_KEY = "stack-admin-Hy6rQ2vN8sXe4LmB9tWd"


# pgserver's process lock is not safe across threads of one process: stacks started side by side (the chaos
# suite runs two) take turns with their PostgreSQL.
_PG = threading.Lock()


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


class Stack:
    def __init__(self, home: Path, workers: int = 1, env: Optional[dict[str, str]] = None, task_queue: str = "nodal-orders"):
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.n_workers = workers
        self.temporal_port, self.api_port = free_port(), free_port()
        self.task_queue = task_queue
        self.extra_env = env or {}
        self.database_url = ""
        self.temporal: Optional[subprocess.Popen] = None
        self.workers: list[Optional[subprocess.Popen]] = [None] * workers
        self.api: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------ pieces
    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODAL_DATABASE_URL": self.database_url, "NODAL_TEMPORAL_ADDRESS": self.temporal_address,
                "NODAL_TASK_QUEUE": self.task_queue, "NODAL_ADMIN_KEY": ADMIN_KEY, "NODAL_LOG_JSON": "true",
                "NODAL_HOME": str(self.home), **self.extra_env}

    def _log(self, name: str):
        return open(self.home / f"{name}.log", "ab")

    def start_postgres(self) -> str:
        import pgserver

        from nodal.migrate import upgrade

        with _PG:
            self._pg = server = pgserver.get_server((self.home / "pg").resolve(), cleanup_mode=None)
        self.database_url = server.get_uri()
        self._pg_socket = self.database_url.split("host=")[1].split("&")[0]
        upgrade(self.database_url)
        return self.database_url

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        with _PG:
            pg_ctl(list(args), pgdata=self._pg.pgdata, user=self._pg.system_user, timeout=30)

    def stop_postgres(self) -> None:
        """Stop the server (fast: open connections are cut, as in a crash of the database host)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def restart_postgres(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self._pg_socket}", "-l", str(self._pg.log), "start")

    def start_temporal(self) -> None:
        settings = Settings(home=self.home, ui_port=free_port())
        cmd = temporal_command(settings, "127.0.0.1", self.temporal_port) + ["--headless"]
        cmd[cmd.index("--db-filename") + 1] = str(self.home / "temporal.db")
        self.temporal = subprocess.Popen(cmd, stdout=self._log("temporal"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: port_open("127.0.0.1", self.temporal_port), 60, "the Temporal dev server")

    def kill_temporal(self) -> None:
        self._kill(self.temporal)

    def start_worker(self, i: int = 0) -> None:
        self.workers[i] = subprocess.Popen([sys.executable, "-m", "launcher.cli", "worker"], env=self.env(), cwd=ROOT,
                                           stdout=self._log(f"worker-{i}"), stderr=subprocess.STDOUT)

    def kill_worker(self, i: int = 0) -> None:
        self._kill(self.workers[i])

    def start_api(self) -> None:
        self.api = subprocess.Popen([sys.executable, "-m", "launcher.cli", "api", "--port", str(self.api_port)],
                                    env=self.env(), cwd=ROOT, stdout=self._log("api"), stderr=subprocess.STDOUT)

        def live() -> bool:
            try:
                return httpx.get(f"{self.api_url}/livez", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(live, 60, "the API")

    def pid_of_worker(self, i: int) -> int:
        proc = self.workers[i]
        assert proc is not None
        return proc.pid

    @staticmethod
    def _kill(proc: Optional[subprocess.Popen]) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    # ------------------------------------------------------------ the whole
    def start(self) -> "Stack":
        self.start_postgres()
        self.start_temporal()
        for i in range(self.n_workers):
            self.start_worker(i)
        self.start_api()
        return self

    def stop(self) -> None:
        for proc in [self.api, *self.workers]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.temporal is not None and self.temporal.poll() is None:
            self.temporal.terminate()
            try:
                self.temporal.wait(15)
            except subprocess.TimeoutExpired:
                self.temporal.kill()
        try:
            self.stop_postgres()
        except Exception:  # already stopped
            pass

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.home.glob("*.log"))
                         if p.name.startswith(("api", "worker")))

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
