"""Turns between processes that change one server's engine, a quiet spell for undoing, and
Ctrl-C held back for a commit.

Commands, the TUI and the service each take a server's turn (`run/turns/NAME.server`, an flock)
for as long as they change its engine: a user pushed live, a reload, a restart. The database is
never held across those engine calls: a command commits its change first, then takes the turn
and brings the engine in line with what the database says at that moment; the service takes the
same turn to compare the engine with the database, so it never sees a change half-made.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from vpn_manager.fsutil import exclusive, held
from vpn_manager.paths import entry


def lock_file(run_dir: Path, server: str) -> Path:
    return entry(run_dir / "turns", server, ".server")


def server_turn(run_dir: Path, server: str) -> contextlib.AbstractAsyncContextManager[None]:
    """Wait for, then hold, the turn to change one server's engine."""
    return exclusive(lock_file(run_dir, server))


def turn_taken(run_dir: Path, server: str) -> bool:
    """Does another process hold this server's turn now?"""
    return held(lock_file(run_dir, server))


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


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Ctrl-C waits until the block has ended, then takes effect as usual: for a commit, which
    cut short may still land (the database driver's thread carries on) while the command
    thinks it did not. Only the main thread can change signal handlers; elsewhere this does
    nothing."""
    caught: list[tuple[int, FrameType | None]] = []
    try:
        previous = signal.signal(
            signal.SIGINT, lambda signum, frame: caught.append((signum, frame))
        )
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
