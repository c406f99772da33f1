"""A free TCP port for a server a test starts, chosen outside the kernel's ephemeral range.

Binding to port 0 gets a free port from the ephemeral range (32768-60999 on Linux by default), the
range the kernel also draws the local port of every outgoing connection from. Between a test
picking such a port and its server binding it (PostgreSQL's initdb alone takes seconds), a
connection opened by any process of the suite's other workers can take it: a whole `make test` once
failed on PostgreSQL's "could not bind IPv4 address: Address already in use" for port 33511. The
kernel never assigns a port below that range on its own, so there only another server could take
the port; each pick is random and checked by binding it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence
from pathlib import Path

_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections."""
    try:
        low, high = (int(part) for part in _PORT_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(candidates: Sequence[int] | None = None) -> int:
    """A port on 127.0.0.1 that nothing is bound to: the first of ``candidates`` that is free
    (by default 100 random ports below the ephemeral range, where there is room for them); else
    one the kernel picks (binding to port 0)."""
    if candidates is None:
        low, _ = ephemeral_range()
        room = range(_LOWEST, low)
        candidates = random.sample(room, 100) if len(room) >= 1000 else []
    for port in candidates:
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
