"""Loopback ports for the processes tests and benchmarks start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1: free now, and from the ephemeral range.

    The ephemeral range (32768 and up) also keeps clear of the ports browsers'
    fetch refuses ("bad ports", e.g. 6000 or 10080), which Node's fetch enforces.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
