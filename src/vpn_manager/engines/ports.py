"""Small socket helpers the engines and the server service share: free control ports, and
whether a server's port is listening."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

from vpn_manager.specs import ServerSpec

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
_UNCONNECTED = "07"  # TCP_CLOSE, as /proc/net/udp writes a bound, unconnected UDP socket
_WILDCARDS = {"0.0.0.0", "::"}


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


def port_listening(spec: ServerSpec) -> bool:
    """Is the server's TCP port ready for clients? A native engine's is looked up in this
    machine's socket table, so the probe opens no connection: a connect that sends nothing is a
    failed handshake that sing-box and Xray write into the server's error log (every status, every
    restart, every round of the service). Elsewhere (a container's port, published or tunnelled)
    only a connect can tell."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    try:
        listen = ipaddress.ip_address(spec.listen).compressed
    except ValueError:  # a name, not an address: only a connect can resolve it
        listen = ""
    if spec.runtime != "native" or not listen or not tables[0].exists():
        return port_open(connect_address(spec.listen), spec.port)
    return any(_listens(table, listen, spec.port) for table in tables)


def udp_bound(listen: str, port: int) -> bool | None:
    """Is a UDP socket (a QUIC server's) bound to `port` on `listen` or every address, in this
    machine's socket table? None where the table cannot tell (no /proc, a name for an address):
    nothing but the engine's own answer can then."""
    tables = [Path("/proc/net/udp"), Path("/proc/net/udp6")]
    try:
        address = ipaddress.ip_address(listen).compressed
    except ValueError:
        return None
    if not tables[0].exists():
        return None
    return any(_listens(table, address, port, _UNCONNECTED) for table in tables)


def _listens(table: Path, listen: str, port: int, state: str = _LISTEN) -> bool:
    """Does /proc/net/tcp(6) hold a listening socket (or /proc/net/udp(6) a bound one, `state`
    07) on `port` bound to `listen` or to every address?"""
    try:
        lines = table.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return False
    wanted = {listen, *_WILDCARDS}
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != state:
            continue
        address, _, port_hex = fields[1].partition(":")
        if int(port_hex, 16) == port and _address(address) in wanted:
            return True
    return False


def _address(hex_address: str) -> str:
    """An address as /proc/net/tcp(6) writes it: 32-bit words in the host's byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw).compressed
