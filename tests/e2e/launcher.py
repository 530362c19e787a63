"""Start `vpn` commands for the end-to-end tests from a preloaded interpreter.

A command's own work is a fraction of a second; importing what it needs (SQLAlchemy, pydantic,
Typer) takes about 0.6 s of CPU on these machines, and the end-to-end tests run thousands of
commands. A launcher process imports those libraries once and forks a child per command. The
child is a real process of its own running the real entry point (`vpn_manager.cli.entry.main`)
with the command's argv, environment, working directory and standard streams; it exits with the
command's exit code, and the engines it starts are its children as they would be of `vpn`.

What the launcher cannot stand in for is still run the slow way, by the tests that need it: the
start-up itself (`tests/test_imports.py`, the Ctrl-C tests), kills at random moments
(`tests/e2e/test_crash.py` times them from the fresh interpreter's start) and commands run in
another network namespace.

Run as a script: `python launcher.py SOCKET` serves on the unix socket SOCKET until killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# What the commands import that is slow to import; our own light modules load in the child.
PRELOAD = (
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.sqlite",
    "aiosqlite",
    "pydantic",
    "typer",
    "rich.console",
    "rich.table",
    "vpn_manager.cli.entry",
    "vpn_manager.cli.app",
    "vpn_manager.storage.sql",
    "vpn_manager.storage.orm",
    "vpn_manager.models",
    "vpn_manager.services.servers",
    "vpn_manager.services.users",
)


def _serve(path: str) -> None:
    import importlib

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    for module in PRELOAD:
        importlib.import_module(module)
    from vpn_manager.cli import entry

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            _child(conn, fds, request, entry.main)
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(f"P{pid}\n".encode())
        conn.close()


def _child(conn: socket.socket, fds: list[int], request: dict[str, object], main: object) -> None:
    """Become the command: its streams, environment, directory and argv; run it; exit."""
    import atexit
    import traceback

    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
            os.close(fd)
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(str(request["cwd"]))
        argv = request["argv"]
        assert isinstance(argv, list)
        sys.argv = [str(a) for a in argv]
        try:
            main()  # type: ignore[operator]
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                sys.stderr.write(f"{exc.code}\n")
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"X{code}\n".encode())
    finally:
        os._exit(code)


class Launcher:
    """The launcher process of one test worker, and how a command is run through it."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "launcher.sock")
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the vpn launcher did not start")

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Like `subprocess.run(argv, env=env, capture_output=True, text=True,
        stdin=DEVNULL, timeout=timeout)`."""
        import tempfile

        with (
            open(os.devnull, "rb") as stdin,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
        ):
            conn.connect(self.path)
            request = {"argv": argv, "env": env, "cwd": os.getcwd()}
            socket.send_fds(
                conn, [json.dumps(request).encode()], [stdin.fileno(), out.fileno(), err.fileno()]
            )
            pid, code = self._wait(conn, timeout, argv)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if code is None:
            code = -signal.SIGKILL  # ended by a signal: the launcher reaps it, so which is lost
        del pid
        return subprocess.CompletedProcess(argv, code, stdout, stderr)

    def _wait(
        self, conn: socket.socket, timeout: float, argv: list[str]
    ) -> tuple[int | None, int | None]:
        deadline = time.monotonic() + timeout
        pid: int | None = None
        code: int | None = None
        buffer = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout)
            conn.settimeout(left)
            try:
                chunk = conn.recv(256)
            except TimeoutError:
                continue
            if not chunk:
                return pid, code
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"P"):
                    pid = int(line[1:])
                elif line.startswith(b"X"):
                    code = int(line[1:])

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


if __name__ == "__main__":
    _serve(sys.argv[1])
