"""Loopback ports for the servers the tests and benchmarks start."""

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may take it before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
