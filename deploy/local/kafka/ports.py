"""Loopback ports for the broker: pick free ones, tell whether one is taken."""

from __future__ import annotations

import contextlib
import socket

__all__ = ["HOST", "free_ports", "port_in_use"]

HOST = "127.0.0.1"


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are held open until every port is chosen, so the ports are distinct. As
    with any "find a free port" helper, another process may grab one before the broker
    binds it; ``KafkaBroker.start()`` then fails with a clear "address in use" error.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets on its server sockets: TIME_WAIT leftovers of a killed
        # broker's connections must not count as "in use", a live listener must.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False
