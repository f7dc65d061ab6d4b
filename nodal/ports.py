"""A free TCP port for a server about to start (test and benchmark stacks, side by side on one machine)."""

from __future__ import annotations

import random
import socket
from contextlib import closing
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, from below the kernel's ephemeral range. A port from that range (binding port 0) can be
    handed to any process's outgoing connection before the server binds it: a Temporal dev server started that
    way failed with 'address already in use' while other stacks ran beside it. The top 1,000 below the range are
    left for servers that also bind a neighbouring port."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, max(_ephemeral_start() - 1000, 11000))
        with closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with closing(socket.socket()) as s:  # a machine with nothing free down there: whatever the kernel gives
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
