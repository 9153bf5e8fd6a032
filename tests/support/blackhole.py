"""A loopback port that swallows connection attempts, like a host that drops packets."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def black_hole() -> Iterator[int]:
    """A port whose listen queue is full: Linux drops further SYNs, so a
    connect there waits for its own timeout, as against a firewalled host.
    A refused port (nothing listening) would answer at once and prove nothing
    about timeouts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)  # takes the one queue slot
    try:
        yield port
    finally:
        filler.close()
        server.close()
