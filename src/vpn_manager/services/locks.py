"""Turns between processes that change one server's engine, and a quiet spell for undoing.

Commands, the TUI and the service each take a server's turn (`run/NAME.apply.lock`, an flock)
for as long as they change its engine: a user pushed live, a reload, a restart. The database is
never held across those engine calls: a command commits its change first, then takes the turn
and brings the engine in line with what the database says at that moment; the service takes the
same turn to compare the engine with the database, so it never sees a change half-made.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from vpn_manager.paths import entry


def lock_file(run_dir: Path, server: str) -> Path:
    return entry(run_dir, server, ".apply.lock")


@asynccontextmanager
async def server_turn(run_dir: Path, server: str) -> AsyncIterator[None]:
    """Wait for, then hold, the turn to change one server's engine."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_file(run_dir, server), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def turn_taken(run_dir: Path, server: str) -> bool:
    """Does another process hold this server's turn now?"""
    path = lock_file(run_dir, server)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def no_interrupt() -> Iterator[None]:
    """Ctrl-C is ignored while a change that was interrupted is being undone (a second Ctrl-C
    would otherwise leave it half undone). Only the main thread can change signal handlers;
    elsewhere this does nothing."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
