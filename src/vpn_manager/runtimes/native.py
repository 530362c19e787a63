"""Native runtime: each server's engine is a detached process that outlives the CLI.

Files per server under the state directory: `run/NAME.lock` (held by the engine for its whole life,
see launch.py), `run/NAME.pid`, and the log `logs/NAME.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.errors import EngineError
from vpn_manager.fsutil import held
from vpn_manager.paths import entry
from vpn_manager.runtimes.base import Launch, ProcessState, ServerFiles
from vpn_manager.runtimes.launch import ALREADY_RUNNING

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine, Files
    from vpn_manager.proc import Commands
    from vpn_manager.specs import ServerSpec


class NativeRuntime:
    def __init__(self, run_dir: Path, logs_dir: Path) -> None:
        self.run_dir = run_dir
        self.logs_dir = logs_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def lock_file(self, server: str) -> Path:
        return entry(self.run_dir, server, ".lock")

    def pid_file(self, server: str) -> Path:
        return entry(self.run_dir, server, ".pid")

    def log_file(self, server: str) -> Path:
        return entry(self.logs_dir, server, ".log")

    def _held(self, server: str) -> bool:
        return held(self.lock_file(server))

    def _pid(self, server: str) -> int | None:
        try:
            return int(self.pid_file(server).read_text().strip())
        except (OSError, ValueError):
            return None

    def state(self, server: str) -> ProcessState:
        if not self._held(server):
            return ProcessState(running=False)
        pid = self._pid(server)
        if pid is None:
            return ProcessState(running=True)
        return ProcessState(running=True, pid=pid, started_at=_started_at(pid), rss_bytes=_rss(pid))

    def exited(self, server: str) -> int | None:
        child = self._children.get(server)
        return None if child is None else child.poll()

    async def start(self, launch: Launch) -> int:
        state = self.state(launch.server)
        if state.running and state.pid:
            return state.pid
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(self.logs_dir)
        pid_file = self.pid_file(launch.server)
        pid_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "vpn_manager.runtimes.launch",
            str(self.lock_file(launch.server)),
            str(pid_file),
            "--",
            *launch.argv,
        ]
        log_fd = os.open(launch.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(log_fd, 0o600)  # a log an earlier version left readable to everyone
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,  # its own session: Ctrl-C in our terminal leaves it be
                close_fds=True,
                env={**os.environ, **launch.env},
            )
        except OSError as exc:
            raise EngineError(f"Cannot start {launch.argv[0]}: {exc.strerror}.") from None
        finally:
            os.close(log_fd)
        self._children[launch.server] = child
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            code = child.poll()
            if code == ALREADY_RUNNING:
                pid = self._pid(launch.server)
                if pid:
                    return pid
            elif code is not None:
                return child.pid  # ended at once; the caller's health probe reports why
            if self._pid(launch.server) == child.pid and self._held(launch.server):
                return child.pid
            await asyncio.sleep(0.005)
        raise EngineError(f"The engine for {launch.server} did not start within 5 seconds.")

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        state = self.state(server)
        if not state.running:
            return False
        if state.pid is None:
            raise EngineError(
                f"{server} is running but its pid file {self.pid_file(server)} is missing.",
                hint="Stop the process by hand; `vpn server status` shows what holds the lock.",
            )
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap(server)
                if not self._held(server):
                    self.pid_file(server).unlink(missing_ok=True)
                    return True
                await asyncio.sleep(0.01)
        raise EngineError(f"The engine for {server} (pid {state.pid}) would not stop.")

    def _reap(self, server: str) -> None:
        child = self._children.get(server)
        if child is not None:
            child.poll()

    def logs(self, server: str, lines: int = 100, also: Sequence[Path] = ()) -> list[str]:
        out = tail(self.log_file(server), lines)
        for path in also:
            out += tail(path, lines)
        return out[-lines:] if also else out

    def follow(self, server: str, lines: int = 10, also: Sequence[Path] = ()) -> Iterator[str]:
        return follow_files([self.log_file(server), *also], lines)

    def stats(self, server: str) -> dict[str, Any] | None:
        return None

    # -- the rest of the contract: a process of ours on this machine ---------------------------
    def is_remote(self) -> bool:
        return False

    def placement(self, engine: str, image: str | None) -> dict[str, str | None]:
        return {"image": None, "docker_host": None}

    def address(self) -> str | None:
        return None

    def commands(self, server: str) -> Commands | None:
        return None

    def placed(self, spec: ServerSpec, where: ServerFiles) -> tuple[ServerSpec, Files]:
        """The server as it is, with its private control directory (for unix-socket APIs)."""
        return dataclasses.replace(spec, control_dir=str(where.control())), where.files

    def launch(self, engine: Engine, spec: ServerSpec, where: ServerFiles) -> Launch:
        return Launch(
            server=spec.name,
            argv=engine.argv(spec, where.files.config),
            log_file=self.log_file(spec.name),
        )

    async def put_files(self, server: str, where: ServerFiles) -> None:
        return None  # the engine reads our files

    async def reach(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        return self.placed(spec, where)[0]

    def reloads_in_place(self) -> bool:
        return True  # a signal to its pid (Engine.reload)

    def cuts_sessions(self, engine: str) -> bool:
        return True  # the engine's API, or `ss -K` in this machine's network namespace

    def epoch(self, server: str, state: ProcessState | None = None) -> str:
        return ""  # nothing restarts it but us

    def remade_because(
        self, engine: Engine, spec: ServerSpec, where: ServerFiles, state: ProcessState
    ) -> str | None:
        return None

    def forget(self) -> None:
        return None


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (reads only the end of big files)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * max(lines, 1)))
            data = handle.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:] if lines else []


def follow_files(paths: list[Path], lines: int, poll: float = 0.2) -> Iterator[str]:
    """`tail -F` over several files: the last `lines` of each, then lines as they are appended
    (a file that appears later, or is truncated, is read from its start)."""
    offsets = {path: path.stat().st_size if path.exists() else 0 for path in paths}
    backlog = [line for path in paths for line in tail(path, lines)]  # read before yielding
    yield from backlog
    partial = dict.fromkeys(paths, b"")
    while True:
        for path in paths:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[path]:
                offsets[path] = 0
            if size == offsets[path]:
                continue
            with path.open("rb") as handle:
                handle.seek(offsets[path])
                data = partial[path] + handle.read()
                offsets[path] = handle.tell()
            *complete, partial[path] = data.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
        time.sleep(poll)


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _started_at(pid: int) -> datetime | None:
    """From /proc: the process's start in clock ticks after boot, plus the boot time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return datetime.fromtimestamp(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), UTC)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _private(logs: Path) -> None:
    """The logs directory 0700 and every log in it 0600 (access logs hold clients' addresses):
    earlier versions left them readable to everyone, and an engine appends to what is there."""
    with contextlib.suppress(OSError):
        os.chmod(logs, 0o700)
    with contextlib.suppress(OSError):
        for log in logs.iterdir():
            if log.is_file() and not log.is_symlink() and log.stat().st_mode & 0o077:
                with contextlib.suppress(OSError):
                    os.chmod(log, 0o600)
