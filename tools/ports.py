"""A free TCP port on loopback, for servers started by the load test and the tests."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port that nothing listens on now (the OS picks it; a race with another process is
    possible but harmless on a test machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
