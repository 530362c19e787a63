"""Shared fixtures: a throwaway PostgreSQL server for the session, and databases on both backends.

`postgres_url` starts a private PostgreSQL server once per test session (per xdist worker) from the
Debian `postgresql` package's binaries, on a free port on 127.0.0.1, with its data in a temporary
directory that is deleted when the session ends. Every test that asks for a PostgreSQL database
gets a new, empty database of its own on that server.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.cli_helpers import Cli, InProcessCli, stop_engines
from vpn_manager.storage import Database

POSTGRES_MISSING = (
    "PostgreSQL is missing: the tests need its server binaries (initdb, pg_ctl, postgres) under "
    "/usr/lib/postgresql/<version>/bin or on PATH. `scripts/test` installs it "
    "(apt-get install -y --no-install-recommends postgresql)."
)
_PG_USER = "postgres"  # the superuser of the throwaway cluster (and the system user run as root)

DbUrlFactory = Callable[[], Awaitable[str]]


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, or None."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_parent(as_root: bool) -> Path:
    """Where the cluster's directory goes: the temp dir, unless the `postgres` user could not
    reach it (run as root with a private TMPDIR) or its socket path would be too long."""
    base = Path(tempfile.gettempdir()).resolve()
    reachable = all(
        part.stat().st_mode & stat.S_IXOTH for part in [base, *base.parents] if part != Path("/")
    )
    if (as_root and not reachable) or len(str(base)) > 60:
        return Path("/tmp")
    return base


class PostgresCluster:
    """One initdb'd data directory and the server running on it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="vpn-pg-", dir=_cluster_parent(self.as_root)))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.as_root:
            try:
                account = pwd.getpwnam(_PG_USER)
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.fail(
                    f"{POSTGRES_MISSING} (There is no {_PG_USER!r} system user to run it as.)",
                    pytrace=False,
                )
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)

    def run(self, tool: str, *args: str, check: bool = True) -> bool:
        """Run one of the server's programs (as `postgres` when we are root); False if it failed
        and `check` is off, a test failure with its output if it failed and `check` is on."""
        command = [str(self.bindir / tool), *args]
        if self.as_root:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", _PG_USER, "--", *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode == 0:
            return True
        if check:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            pytest.fail(
                f"{tool} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}",
                pytrace=False,
            )
        return False

    def start(self) -> None:
        self.run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            _PG_USER,
            "--auth",
            "trust",  # local connections only: the server listens on 127.0.0.1 alone
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# vpn-manager tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        for attempt in range(3):  # the free port may be taken before the server binds it
            self.port = _free_port()
            start = ["start", "--pgdata", str(self.data), "--log", str(self.log), "--wait"]
            if self.run("pg_ctl", *start, "-o", f"-p {self.port}", check=attempt == 2):
                return

    def halt(self, mode: str = "fast", wait: bool = True) -> None:
        """Stop the server (`pg_ctl stop -m MODE`: fast rolls back open transactions and drops
        their connections; smart waits for them to end, refusing new ones meanwhile, so
        without `wait`); resume() starts it again on the same port."""
        waiting = [] if wait else ["-W"]
        self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, *waiting)

    def resume(self) -> None:
        start = ["start", "--pgdata", str(self.data), "--log", str(self.log), "--wait"]
        self.run("pg_ctl", *start, "-o", f"-p {self.port}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{_PG_USER}@127.0.0.1:{self.port}/{database}"


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server started from the Debian binaries, removed afterwards; missing
    binaries fail the test (never a skip)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail(POSTGRES_MISSING, pytrace=False)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for this session; yields the URL of its `postgres` database."""
    with running_cluster() as cluster:
        yield cluster.url("postgres")


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of the test's own, which it may halt() and resume() (an outage)
    without disturbing the session's server."""
    with running_cluster() as cluster:
        yield cluster


async def create_postgres_database(server_url: str) -> str:
    """Create an empty database with a unique name on the server; return its URL."""
    name = f"test_{uuid.uuid4().hex}"
    plain = server_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(plain, timeout=10)
    try:
        # FILE_COPY (PostgreSQL 15+) copies the template's files; cheaper here than WAL_LOG.
        strategy = " STRATEGY FILE_COPY" if conn.get_server_version().major >= 15 else ""
        await conn.execute(f'CREATE DATABASE "{name}"{strategy}')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


def sqlite_file_of(url: str) -> Path | None:
    """The file of a `sqlite+aiosqlite:///` URL, None for any other URL."""
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") else None


def open_database(url: str, **options: float) -> Database:
    """A Database for `url`, passing `sqlite_file=` for SQLite (use with `async with`)."""
    busy = int(options.pop("busy_timeout_ms", 5000))
    connect = float(options.pop("connect_timeout_s", 5.0))
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    return Database(
        url, sqlite_file=sqlite_file_of(url), busy_timeout_ms=busy, connect_timeout_s=connect
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'vpn.db').absolute()}"


@pytest.fixture
async def postgres_db_url(postgres_url: str) -> str:
    """A new, empty database of its own on the session's PostgreSQL server."""
    return await create_postgres_database(postgres_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite (a file in tmp_path) and once on PostgreSQL."""
    fixture = "postgres_db_url" if request.param == "postgres" else "sqlite_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def make_db_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> DbUrlFactory:
    """Makes further empty databases on `db_url`'s backend (e.g. the target of an import)."""
    server_url: str | None = None
    if not db_url.startswith("sqlite"):
        server_url = request.getfixturevalue("postgres_url")
    counter = itertools.count(1)

    async def make() -> str:
        if server_url is not None:
            return await create_postgres_database(server_url)
        return f"sqlite+aiosqlite:///{(tmp_path / f'extra{next(counter)}' / 'vpn.db').absolute()}"

    return make


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """The `db_url` database, opened (and so migrated)."""
    async with open_database(db_url) as db:
        yield db


T0 = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


class FixedClock:
    """A clock for UserService that stands still until told to move."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


pytest_plugins = ["tests.ordering"]

# -- markers: what a test needs beyond Python (applied here by folder and fixture) -------------
# e2e: real engines and the real `vpn` (tests/e2e, and the TUI tests that install real servers);
# docker: a running Docker engine (tests/docker); root: network namespaces, nftables, `ss -K` or
# another user; postgres: a real PostgreSQL server. `scripts/test --fast` leaves out all four
# (-m "not e2e and not docker and not root and not postgres"); `scripts/test` runs everything.
_FOLDER_MARKS = {
    "tests/e2e/": "e2e",
    "tests/tui/test_servers.py": "e2e",
    "tests/docker/": "docker",
}
_FIXTURE_MARKS = {
    "need_root": "root",  # tests/e2e/conftest.py
    "_root_and_tools": "root",  # the network-namespace tests (tests/e2e/netns.py)
    "_root_and_clean": "root",  # tests/test_bans.py: the host's nftables
    "wireguard_image": "root",  # tests/docker/test_docker_wireguard.py: clients in namespaces
    "busybox_image": "root",
    "postgres_url": "postgres",
    "postgres_db_url": "postgres",
    "own_postgres": "postgres",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    where = item.nodeid.replace("\\", "/")
    marks = {mark for folder, mark in _FOLDER_MARKS.items() if where.startswith(folder)}
    fixtures = getattr(item, "fixturenames", ())
    marks |= {mark for fixture, mark in _FIXTURE_MARKS.items() if fixture in fixtures}
    for mark in sorted(marks):
        if item.get_closest_marker(mark) is None:
            item.add_marker(mark)


# -- the CLI in a home of the test's own (tests/e2e has its own `vpn`: real processes) ----------
@pytest.fixture
def vpn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[InProcessCli]:
    runner = InProcessCli(tmp_path, monkeypatch, capsys)
    yield runner
    # Whatever the test's outcome, no engine it started outlives it (even one whose database a
    # failure took away); a test that started none pays nothing.
    if any((runner.home / "state" / "run").glob("*.pid")):
        stop_engines(runner)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
