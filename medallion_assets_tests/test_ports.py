"""`ports.free_port`: the port a test's server gets is free, and outside the range the kernel
hands out to outgoing connections, which could otherwise take it before the server binds it."""

from __future__ import annotations

import socket

from medallion_assets_tests.ports import ephemeral_range, free_port


def test_a_free_port_is_below_the_kernels_ephemeral_range_and_can_be_bound():
    low, high = ephemeral_range()
    assert 0 < low <= high
    ports = {free_port() for _ in range(20)}
    assert all(10_000 <= port < low for port in ports), ports
    assert len(ports) > 1  # random picks, not one fixed port every worker would share
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports.pop()))
        sock.listen()


def test_a_port_something_is_bound_to_is_passed_over():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        other = free_port()
        assert other != busy
        assert free_port([busy, other]) == other
        assert free_port([busy]) not in {busy, 0}  # none free: the kernel picks one
