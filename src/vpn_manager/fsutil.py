"""Atomic, private file writes: temp file in the same directory, fsync, rename, fsync the
directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vpn_manager.errors import FileError


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never a mix."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        _replace(path, payload, mode)
    except OSError as exc:
        raise FileError(
            f"Cannot write {path}: {exc.strerror or exc}.",
            hint="Check that the directory is writable and that the path is not a directory.",
        ) from None


def _replace(path: Path, payload: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_dir():
        raise IsADirectoryError(21, "it is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
