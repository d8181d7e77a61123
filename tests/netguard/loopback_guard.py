"""Refuse any lookup of, or connection to, a host that is not loopback (kept trivial on purpose).

One copy for the test process (tests/conftest.py) and for every Python child the tests start
(sitecustomize.py in this folder), so that a CLI run, a bench or a served app is held to the
same rule as the test that started it.
"""
from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
MESSAGE = "tests may not reach the network: {host}"


def is_loopback(host: object) -> bool:
    """True for loopback addresses and names, and for the empty or missing host (a local bind)."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    if host in LOOPBACK_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(record: Callable[[str], None]) -> None:
    """Add the audit hook; ``record`` gets "event host" for each refusal, which code under test
    might catch and swallow, so that the test can still fail on it."""

    def guard(event: str, args: tuple) -> None:
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect" and isinstance(args[1], tuple):
            if args[0].family not in (socket.AF_INET, socket.AF_INET6):
                return
            host = args[1][0]
        else:
            return
        if not is_loopback(host):
            record(f"{event} {host}")
            raise ConnectionRefusedError(MESSAGE.format(host=host))

    sys.addaudithook(guard)
