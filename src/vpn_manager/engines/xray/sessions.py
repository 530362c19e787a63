"""Cutting a user's open tunnels. Xray's RemoveUser stops new connections but leaves the ones a
user already has open. Xray's access log names, for each accepted connection, the client's
address and the user (`from 1.2.3.4:5678 accepted tcp:… [vless-in -> direct] email: user-7`);
those client sockets on our port are then destroyed with `ss -K` (sock_destroy, needs
CAP_NET_ADMIN and a kernel with CONFIG_INET_DIAG_DESTROY). Other users' sockets are untouched.
A Hysteria2 server's clients share one UDP socket: there the logged flows' packets are dropped
instead (engines/flowcuts.py)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from pathlib import Path

from vpn_manager.engines import flowcuts
from vpn_manager.errors import EngineError
from vpn_manager.proc import run
from vpn_manager.specs import ServerSpec

_SCAN_BYTES = 8 * 1024 * 1024  # the end of the access log that is searched for live sessions
_LINE = re.compile(
    r" from (?:tcp:|udp:)?(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+) accepted .* email: (\S+)"
)


def peers_of(access_log: Path, emails: Iterable[str]) -> set[tuple[str, int]]:
    """Client (address, port) pairs the access log shows for these users."""
    wanted = set(emails)
    try:
        with access_log.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _SCAN_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return set()
    peers = set()
    for match in _LINE.finditer(text):
        if match.group(3) in wanted:
            peers.add((match.group(1).strip("[]"), int(match.group(2))))
    return peers


async def established_peers(port: int) -> set[tuple[str, int]]:
    """The remote ends of established TCP connections to our local `port`."""
    done = await run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"])
    peers = set()
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        address, _, peer_port = parts[3].rpartition(":")
        peers.add((address.strip("[]").removeprefix("::ffff:"), int(peer_port)))
    return peers


async def cut_sessions(
    spec: ServerSpec, emails: list[str], access_log: Path, ips: set[str] | None = None
) -> int:
    """Destroy the open client connections of these users (only those from `ips` if given);
    return how many were cut.

    Two passes: the second, a moment later, catches a connection accepted just before the user
    was removed whose log line was not yet written. `ss -K` without CAP_NET_ADMIN kills nothing
    and still succeeds, so the result is checked by listing the connections again."""
    if not emails:
        return 0
    cut: set[tuple[str, int]] = set()
    for pause in (0.0, 0.3):
        await asyncio.sleep(pause)
        targets = peers_of(access_log, emails) & await established_peers(spec.port)
        if ips is not None:
            targets = {peer for peer in targets if peer[0] in ips}
        for address, peer_port in sorted(targets):
            await run(
                [
                    "ss",
                    "-K",
                    "-Htn",
                    "state",
                    "established",
                    f"( sport = :{spec.port} and dst {address} and dport = :{peer_port} )",
                ],
                check=False,
            )
        left = targets & await established_peers(spec.port)
        if left:
            raise EngineError(
                f"Could not cut {len(left)} open connection(s) of the removed users.",
                hint="Cutting sessions needs root or CAP_NET_ADMIN (and a kernel with "
                "CONFIG_INET_DIAG_DESTROY).",
            )
        cut |= targets
    return len(cut)


async def cut_quic(
    spec: ServerSpec, emails: list[str], access_log: Path, ips: set[str] | None = None
) -> int:
    """Cut the QUIC connections of these users (only those from `ips` if given) by dropping
    their flows' packets; return how many flows that was. Two passes, as cut_sessions."""
    if not emails:
        return 0
    cut: set[tuple[str, int]] = set()
    for pause in (0.0, 0.3):
        await asyncio.sleep(pause)
        targets = peers_of(access_log, emails) - cut
        if ips is not None:
            targets = {peer for peer in targets if peer[0] in ips}
        await flowcuts.drop_flows(targets, spec.port)
        cut |= targets
    return len(cut)
