"""The log files in the logs directory (the engines' and any other), read for a viewer: the end of
each, or what was written after a point (the TUI's logs screen)."""

from __future__ import annotations

import os
from pathlib import Path

from vpn_manager.runtimes.native import tail

TAIL_LINES = 2000
MAX_READ = 4 * 1024 * 1024  # after a clear: at most this much of what was written since


def log_files(logs_dir: Path) -> dict[str, Path]:
    """Each `.log` file in `logs_dir` by its name without the suffix, sorted; none when the
    directory cannot be read."""
    try:
        files = sorted(p for p in logs_dir.iterdir() if p.suffix == ".log" and p.is_file())
    except OSError:
        return {}
    return {p.stem: p for p in files}


def read_log(path: Path, since: int | None) -> list[str]:
    """The end of a log file, or (after a clear) what was written after byte `since`."""
    if since is None:
        return tail(path, TAIL_LINES)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(since, size - MAX_READ) if size >= since else 0)
            data = handle.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()
