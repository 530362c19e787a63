"""A private PostgreSQL server for the bench's PostgreSQL column: initdb'd in a temporary
directory from the `postgresql` package's binaries, on a free port on 127.0.0.1 (and a unix
socket in its directory), with the server's default durability settings (fsync and synchronous
commit on, as a real deployment runs), stopped and deleted when the bench ends.

The tests start their own server the same way (tests/conftest.py); the bench does not import
the tests, so the few lines it needs are here.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"  # the cluster's superuser, and the system user it runs as under root


class PostgresError(Exception):
    """PostgreSQL is missing, or one of its programs failed (with its output)."""


def bindir() -> Path:
    """The newest PostgreSQL server binaries on this machine."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for found in candidates:
        if all((found / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "createdb")):
            return found
    raise PostgresError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres, createdb) under "
        "/usr/lib/postgresql/<version>/bin or on PATH; install Debian's `postgresql`, "
        "or run with --no-postgres"
    )


class PostgresServer:
    """One cluster in a directory of its own under /tmp (short enough for its unix socket, and
    reachable by the `postgres` user when the bench runs as root); start(), then stop()."""

    def __init__(self) -> None:
        self.bindir = bindir()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="vpn-bench-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._databases = 0
        if self.as_root:  # PostgreSQL refuses to run as root
            account = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PostgresError(
                f"PostgreSQL's {tool} failed ({done.returncode}): {done.stderr}{log}".strip()
            )

    def start(self) -> None:
        self.run(
            "initdb",
            *("--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust"),
            *("--encoding", "UTF8", "--locale", "C"),
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# vpn-manager bench: local connections only\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.run(
            "pg_ctl",
            *("start", "--pgdata", str(self.data), "--log", str(self.log), "--wait"),
            *("-o", f"-p {self.port}"),
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create(self, template: str | None = None) -> str:
        """A new database (a copy of `template`, if given); returns its name."""
        self._databases += 1
        name = f"bench{self._databases:04d}"
        extra = ["--template", template] if template else []
        self.run("createdb", *self._client(), *extra, name)
        return name

    def drop(self, name: str) -> None:
        self.run("dropdb", *self._client(), name)

    def url(self, name: str, *, unix_socket: bool = False) -> str:
        """The URL a `vpn` command is given; over the unix socket for commands run in another
        network namespace (whose 127.0.0.1 is not this one)."""
        if unix_socket:
            return f"postgresql://{SUPERUSER}@/{name}?host={self.root}&port={self.port}"
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _client(self) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port), "--username", SUPERUSER]
