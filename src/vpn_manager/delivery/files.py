"""Files a user's credentials are handed out in (QR code PNGs, client configs, WireGuard
`.conf`s): written atomically with mode 0600, and only over a regular file. A directory, a
device, a pipe or a socket given as the file is refused with one sentence before anything is
written: a rename over a pipe or a socket would replace it, and a shell redirect would leave a
private key readable by everyone (0644)."""

from __future__ import annotations

import stat
from pathlib import Path

from vpn_manager.errors import FileError, InvalidInput
from vpn_manager.fsutil import atomic_write, kind_of


def check_file(path: Path, hint: str) -> None:
    """InvalidInput unless `path` is a regular file or nothing yet (a symlink counts as what it
    points to, as a redirect would)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileError(f"Cannot use {path}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{path} is {kind_of(info.st_mode)}, not a file.", hint=hint)


def write_private(path: Path, data: bytes | str, hint: str = "Give a file name.") -> None:
    """Write `data` to the file `path` (mode 0600, atomically); refused as `check_file` says."""
    check_file(path, hint)
    atomic_write(path, data, mode=0o600)


def private_dir(path: Path, hint: str) -> Path:
    """`path` as a directory for such files: made (0700, with its parents) if it is missing;
    InvalidInput if it is something else."""
    if not path.exists():
        try:
            path.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise FileError(f"Cannot make the directory {path}: {exc.strerror or exc}.") from None
    elif not path.is_dir():
        raise InvalidInput(f"{path} is not a directory.", hint=hint)
    return path
