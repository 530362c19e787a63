"""Small socket helpers the engines and the server service share: free control ports, and
whether a listening port answers."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for an engine's private control API)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def connect_address(listen: str) -> str:
    """Where to reach a socket bound to `listen` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen, listen)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
