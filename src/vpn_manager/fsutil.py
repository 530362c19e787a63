"""Atomic, private file writes (temp file in the same directory, fsync, rename, fsync the
directory), locks between processes (flock on a private file), and the bounded read of a PEM
file a user names (a certificate or key)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from vpn_manager.errors import FileError, InvalidInput

MAX_PEM_BYTES = 1 << 20  # a certificate chain is a few KiB

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a pipe (FIFO)",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for a message: "a directory", "a device"…"""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a regular file of at most MAX_PEM_BYTES (`what`: "certificate" or "key",
    for the message). A pipe would block and a device (/dev/zero) never end, so anything but a
    regular file is refused before it is read. `server install --cert` and `vpn web --cert`
    both read through here."""
    cannot = f"Cannot read the {what} file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInput(f"The {what} file {path} does not exist.") from None
    except OSError as exc:
        raise InvalidInput(f"{cannot}: {exc.strerror or exc}.") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{cannot}: it is a directory.")
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"{cannot}: it is not a regular file (a pipe or a device).")
        data = b""
        while len(data) <= MAX_PEM_BYTES and (chunk := os.read(fd, MAX_PEM_BYTES + 1)):
            data += chunk
    except OSError as exc:
        raise InvalidInput(f"{cannot}: {exc.strerror or exc}.") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PEM_BYTES:
        raise InvalidInput(
            f"{cannot}: it is larger than 1 MiB, more than any certificate chain or key."
        )
    return data


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


def remove_temps(path: Path, older_than: float | None = None) -> int:
    """Remove the temp files atomic_write left beside `path` when its writer was killed between
    making one and renaming it (`.NAME.XXXXXXXX.tmp`). Call only while holding whatever turn
    that file's writers hold, so that none of them is half-way, or give `older_than` (seconds):
    then only files untouched that long go, which no live writer still holds. Returns how many
    it removed."""
    prefix = f".{path.name}."
    removed = 0
    try:
        found = list(path.parent.iterdir())
    except OSError:
        return 0
    now = time.time()
    for item in found:
        middle = item.name[len(prefix) : -len(".tmp")]
        if item.name.startswith(prefix) and item.name.endswith(".tmp") and len(middle) == 8:
            try:
                if older_than is not None and now - item.stat().st_mtime < older_than:
                    continue
                item.unlink()
            except OSError:
                continue
            removed += 1
    return removed


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


@asynccontextmanager
async def exclusive(lock: Path) -> AsyncIterator[None]:
    """Wait for, then hold, an exclusive flock on `lock` (made 0600 in a 0700 directory). The
    wait is in a thread, so that a task of this process holding it can finish on the event loop;
    closing the file releases it, and so does the process's death."""
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def exclusive_briefly(lock: Path) -> Iterator[None]:
    """exclusive() for a few file operations in synchronous code: the wait blocks the thread,
    so hold it only around work that takes microseconds."""
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def held(lock: Path) -> bool:
    """Does some process hold an flock on `lock` now?"""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases it, if it was ours
    return False
