"""Cuts owed: users taken off a running engine whose open connections may not be cut yet.

Removing a user from a running engine is two steps on most engines: the engine is told (Xray's
RemoveUser, sing-box's ssm-api), then the user's already-open connections are cut (`ss -K`,
dropped QUIC flows, sing-box's CloseConnection). A process killed between the two leaves a
tunnel that goes on working, and the engine, which no longer has the user, agrees with the
database. So before the first step the users are written here (`run/NAME.cuts.json`, a JSON list
of engine-side names, atomically) and taken out once their connections are cut; convergence (each
`vpn serve` round) cuts what a killed process left here.

Every reader and writer holds the server's turn (locks.py), so read-modify-write is safe across
processes. A name here is only a request to cut: cutting the connections of a user who has none
does nothing, and a user the database wants on the server again is dropped uncut.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from vpn_manager.fsutil import atomic_write, remove_temps
from vpn_manager.paths import entry


def _file(run_dir: Path, server: str) -> Path:
    return entry(run_dir, server, ".cuts.json")


def owed(run_dir: Path, server: str) -> set[str]:
    """The users whose open connections on `server` are still to be cut (a damaged file reads
    as none: its names are lost, which leaves at worst what the file was there to prevent)."""
    try:
        data = json.loads(_file(run_dir, server).read_text())
    except (OSError, ValueError):
        return set()
    return {str(name) for name in data} if isinstance(data, list) else set()


def owe(run_dir: Path, server: str, names: Iterable[str]) -> None:
    """Add `names` to what is owed (call with the server's turn, before the engine loses them)."""
    wanted = owed(run_dir, server) | set(names)
    if wanted:
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(_file(run_dir, server), json.dumps(sorted(wanted)))


def paid(run_dir: Path, server: str, names: Iterable[str]) -> None:
    """Take `names` out (their connections are cut, or need no cut); the file goes when empty."""
    left = owed(run_dir, server) - set(names)
    if left:
        atomic_write(_file(run_dir, server), json.dumps(sorted(left)))
    else:
        forget(run_dir, server)


def forget(run_dir: Path, server: str) -> None:
    """Nothing is owed any more (the engine stopped: no connection of it is left open)."""
    _file(run_dir, server).unlink(missing_ok=True)


def sweep(run_dir: Path, server: str) -> int:
    """Remove the temp files of writes here killed half-way (call with the server's turn)."""
    return remove_temps(_file(run_dir, server))
