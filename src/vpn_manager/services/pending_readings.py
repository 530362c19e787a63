"""Pending readings: counters read just before an engine stops or reloads, kept until the next
poll counts them.

A restart starts an engine's counters from zero and a sing-box reload forgets its connection
list, so whatever moved since the last poll would be lost. Before either, ServerService reads the
counters once more and appends them here (`run/NAME.settle.json`); the next poll counts them
before the live ones, then deletes the file. Counting a kept reading twice adds nothing: it
is compared with the baseline it already set. Writers and the poll share the poll lock, held over
the stop or reload itself, so no poll reads between the last reading and the reset.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from vpn_manager.engines.base import Counter
from vpn_manager.fsutil import atomic_write, exclusive
from vpn_manager.paths import entry


def poll_lock(run_dir: Path) -> contextlib.AbstractAsyncContextManager[None]:
    """The machine-wide turn for reading counters (the service, `vpn monitor traffic`, and the
    last reading before an engine resets); server turns there end in .server (locks.py)."""
    return exclusive(run_dir / "turns" / "poll")


def _file(run_dir: Path, server: str) -> Path:
    return entry(run_dir, server, ".settle.json")


def keep(run_dir: Path, server: str, epoch: str, counters: list[Counter]) -> None:
    """Append one reading (call with the poll lock held)."""
    path = _file(run_dir, server)
    readings = _read(path) or []
    readings.append({"epoch": epoch, "counters": [[c.key, c.user, c.up, c.down] for c in counters]})
    atomic_write(path, json.dumps(readings))


def pending(run_dir: Path, server: str) -> list[tuple[str, list[Counter]]] | None:
    """The readings not yet counted, oldest first; None when there is no file (a damaged
    one gives [], so that done() removes it)."""
    readings = _read(_file(run_dir, server))
    if readings is None:
        return None
    found = []
    for reading in readings:
        rows = reading.get("counters")
        counters = [Counter(str(k), str(u), int(up), int(dn)) for k, u, up, dn in rows or ()]
        found.append((str(reading.get("epoch")), counters))
    return found


def remove_temps(run_dir: Path) -> None:
    """Remove the temp files of writes here killed half-way (call with the poll lock held)."""
    for item in run_dir.glob(".*.settle.json.*.tmp"):
        item.unlink(missing_ok=True)


def done(run_dir: Path, server: str) -> None:
    _file(run_dir, server).unlink(missing_ok=True)


def _read(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []  # a damaged file: its bytes are lost, never counted wrongly
    return data if isinstance(data, list) else []
