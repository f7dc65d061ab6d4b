"""`nodal dev` as a newcomer runs it, in a terminal (a pseudo-terminal), and a real browser (Debian's chromium,
driven by Playwright) on what it serves. Screenshots go to NODAL_SCREENSHOTS (default .artifacts/screenshots)."""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodal.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("NODAL_CHROMIUM", "/usr/bin/chromium")
# Chromium on a machine with no route out: no background traffic, no sandbox (root in CI).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def screenshots() -> Path:
    path = Path(os.environ.get("NODAL_SCREENSHOTS", ROOT / ".artifacts" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_only(refused: list[str]):
    """A Playwright route handler that lets requests to this machine through and refuses (and notes) any other."""
    async def route(r):
        if r.request.url.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost"):
            await r.continue_()
        else:
            refused.append(r.request.url)
            await r.abort()
    return route


@dataclass
class DevStack:
    proc: subprocess.Popen
    home: Path
    api: str
    ui: str
    temporal: str
    output: list[bytes] = field(default_factory=list)

    def screen(self) -> str:
        """Everything the terminal was sent, without its control sequences."""
        return ANSI.sub("", b"".join(self.output).decode("utf-8", "replace"))

    def raw(self) -> str:
        return b"".join(self.output).decode("utf-8", "replace")

    @property
    def admin_key(self) -> str:
        return (self.home / "admin_key").read_text().strip()

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, as a person stops it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if self.proc.poll() is not None:
                raise AssertionError(f"nodal dev exited ({self.proc.returncode}):\n{self.screen()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} on the terminal in {timeout} s:\n{self.screen()[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def browser_ready() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("NODAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (CI installs it)")
    return CHROMIUM


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory, browser_ready):
    """`nodal dev` on free ports in a pseudo-terminal of 120 columns, stopped with Ctrl-C at the end."""
    work = tmp_path_factory.mktemp("newcomer")
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {**os.environ, "NODAL_HOME": str(work / ".nodal"), "NODAL_API_PORT": str(api_port),
           "NODAL_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}", "NODAL_UI_PORT": str(ui_port),
           "COLUMNS": "120", "LINES": "50", "TERM": "xterm-256color"}
    for k in ("NODAL_LOG_JSON", "NODAL_DATABASE_URL", "NODAL_ADMIN_KEY"):
        env.pop(k, None)
    nodal = shutil.which("nodal") or str(Path(sys.executable).parent / "nodal")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([nodal, "dev"], stdin=terminal, stdout=terminal, stderr=terminal, cwd=work, env=env,
                            start_new_session=True)
    os.close(terminal)
    stack = DevStack(proc, work / ".nodal", f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}",
                     f"127.0.0.1:{temporal_port}")

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                return
            if not chunk:
                return
            stack.output.append(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        stack.wait_for("Latest events")
        yield stack
    finally:
        stack.stop()
        reader.join(5)
        os.close(controller)
