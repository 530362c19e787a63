"""The one seam for running external commands: argv lists only (never a shell), the exact command
logged, the stderr tail carried into the error, the child killed on timeout or cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vpn_manager.errors import EngineError, EngineMissing

log = logging.getLogger("vpn_manager.proc")
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for a child that must not outlive this process however it ends (kill -9
    included): the kernel kills it when we die (Linux; elsewhere it does nothing). A parent
    killed between the fork and that request would go unnoticed, so the child also checks that
    its parent is still the process that made it, and ends at once if not."""
    parent = os.getpid()

    def in_the_child() -> None:
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # already orphaned: nobody is left to end it
            os._exit(1)

    return in_the_child


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


async def run(
    argv: list[str], *, timeout: float = 10.0, check: bool = True, input: str | None = None
) -> Completed:
    """Run a command to completion. `input` goes to its stdin (for secrets: never in argv, where
    other users could read them in /proc)."""
    log.debug("run: %s", shlex.join(argv))
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise EngineMissing(f"{argv[0]} is not installed.") from None
    try:
        data = None if input is None else input.encode()
        out, err = await asyncio.wait_for(process.communicate(data), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise EngineError(
            f"`{shlex.join(argv)}` did not finish within {timeout:g} s.",
            hint="The machine may be too busy; try again.",
        ) from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            process.kill()
        await process.wait()
        raise
    done = Completed(
        argv, process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )
    if check and done.returncode != 0:
        raise failed(done)
    return done


def run_sync(argv: list[str], *, timeout: float = 10.0, check: bool = True) -> Completed:
    """run() for synchronous callers (the Docker runtime works in threads). stdout and stderr go
    to temporary files, not pipes: a command that leaves a process behind (`ssh -f`) would keep
    a pipe open, and reading it to its end would hang."""
    import subprocess
    import tempfile

    log.debug("run: %s", shlex.join(argv))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise EngineMissing(f"{argv[0]} is not installed.") from None
        except subprocess.TimeoutExpired:
            raise EngineError(
                f"`{shlex.join(argv)}` did not finish within {timeout:.0f} s."
            ) from None
        out.seek(0)
        err.seek(0)
        done = Completed(
            argv,
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and done.returncode != 0:
        raise failed(done)
    return done


class Commands(Protocol):
    """Where an engine runs its helper commands (WireGuard's `ip`, `wg`, `nft`): on this machine
    (HOST) or inside the server's container (runtimes/docker/exec.py). Same contract as run();
    `local` says whether they act on this machine's network namespace and /proc."""

    local: bool

    async def __call__(
        self,
        argv: list[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input: str | None = None,
    ) -> Completed: ...


class _Host:
    local = True

    async def __call__(
        self,
        argv: list[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input: str | None = None,
    ) -> Completed:
        return await run(argv, timeout=timeout, check=check, input=input)


HOST: Commands = _Host()
"""Commands run on this machine, through run()."""


def failed(done: Completed, where: str = "") -> EngineError:
    """The error for a command that exited non-zero: the command and its last stderr line."""
    tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
    return EngineError(f"`{shlex.join(done.argv)}`{where} failed: {tail[0]}")
