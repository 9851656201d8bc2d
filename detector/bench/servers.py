"""A free TCP port on loopback, for the local servers that tests and benchmarks start.

>>> 1024 <= free_port() <= 65535
True
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
