"""Servers: install, run, change and remove them, and keep their users in the running engine.

Every change is a transaction across the database, the rendered config and the running engine:
- user-level changes (grant, revoke, enable, disable, delete) are written into the rendered config
  and applied live through the engine's API; if the live call fails, the file and the database
  are put back;
- everything else goes render → validate with the real engine → atomic write → restart → health
  probe; on failure the last good config is restored and restarted, and the command fails with
  the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from vpn_manager.engines import guard
from vpn_manager.engines.base import Client, Engine, Files, Health, ServerSpec
from vpn_manager.engines.ports import free_port
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import Conflict, EngineError, InvalidInput, NotFound, VpnError
from vpn_manager.fsutil import atomic_write, remove_temps
from vpn_manager.kinds import UDP_PROTOCOLS, DesiredState, Protocol, RuntimeKind
from vpn_manager.paths import Paths, entry
from vpn_manager.runtimes.base import DockerDefaults, Launch, ProcessState, Runtime, ServerFiles
from vpn_manager.runtimes.choice import Runtimes
from vpn_manager.runtimes.native import NativeRuntime
from vpn_manager.services import pending_readings, subnets
from vpn_manager.services.locks import no_interrupt, server_turn, turn_taken
from vpn_manager.storage import Database

if TYPE_CHECKING:
    # The input and output models are built where a command needs them: the long-running
    # service never does (see daemon/main.py).
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.engines.linkdata import LinkData
    from vpn_manager.models.server import Server, ServerCreate, ServerStatus
    from vpn_manager.proc import Commands
    from vpn_manager.runtimes.docker.runtime import DockerRuntime
    from vpn_manager.storage.orm import ServerRow

HEALTH_DEADLINE = 10.0
T = TypeVar("T")
CONTROL_DIR_MAX = 88  # leaves 19 bytes of a unix socket path's 107 for "/" and the socket's name

log = logging.getLogger("vpn_manager.servers")


_EXIT_REASONS = {
    23: ": the engine refused the config.",
    255: ": the engine could not start, for example because its port is taken.",
}


@dataclass(frozen=True)
class Applied:
    """How a user change reached one server: "live" (through the engine's API), "reloaded" (the
    engine re-read its config; open connections were reset), "recreated" (a new container),
    "started" (it was down while it should run: started on the change) or "saved" (stopped: it
    takes effect on the next start)."""

    server: str
    how: str


@dataclass(frozen=True)
class Access:
    """How one user reaches one server: the link, and the typed data it is written from (for
    client configs: vpn_manager.links.client_config)."""

    server: str
    protocol: str
    link: str
    data: LinkData = field(repr=False)
    note: str = ""


@dataclass
class Pending:
    """A committed user change one server has still to get: engine identities (Client.email)
    added and removed there."""

    added: dict[str, Client] = field(default_factory=dict)
    removed: dict[str, Client] = field(default_factory=dict)

    def note(self, before: list[Client], after: list[Client]) -> None:
        old = {c.email: c for c in before}
        new = {c.email: c for c in after}
        for email, client in new.items():
            if email not in old:
                self.removed.pop(email, None)
                self.added[email] = client
        for email, client in old.items():
            if email not in new:
                self.added.pop(email, None)
                self.removed[email] = client

    def reversed(self) -> Pending:
        return Pending(added=dict(self.removed), removed=dict(self.added))


def pending_of(session: AsyncSession) -> dict[int, Pending]:
    """The changes a transaction made to servers' users, by server id (kept on the session)."""
    pending: dict[int, Pending] = session.info.setdefault("vpn_pending", {})
    return pending


def engine_identity(client: Client) -> str:
    """How an engine names a user: WireGuard by the peer's public key, the others by email."""
    return str(client.secret.get("public_key") or client.email)


def client_of(identity: str) -> Client:
    """A user an engine has and the database does not, as much of a Client as removing it
    takes (its email, or its WireGuard public key)."""
    found = re.fullmatch(r"user-(\d+)", identity)
    if found:
        return Client(int(found.group(1)), identity, {})
    return Client(0, identity, {"public_key": identity}, alias=identity)


def _users(count: int) -> str:
    return f"{count} user" if count == 1 else f"{count} users"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def owners(clients: list[Client]) -> dict[str, Client]:
    """Engine-side identities → the client: protocol servers count by Client.email (user-<id>),
    proxies by user name, WireGuard by the peer's public key."""
    owner = {c.email: c for c in clients} | {c.name: c for c in clients}
    owner |= {c.secret["public_key"]: c for c in clients if "public_key" in c.secret}
    return owner


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_port_free(listen: str, port: int, udp: bool = False) -> None:
    """Bind the port the way the engines do: a TCP listener sets SO_REUSEADDR, so connections
    left in TIME-WAIT by a server just removed do not hold the port."""
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        if not udp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen, port))
            if not udp:
                sock.listen()  # with SO_REUSEADDR only listen() finds another listener
        except PermissionError:
            raise InvalidInput(
                f"Port {port} needs root (ports below 1024 are privileged).",
                hint="Run as root, or pick a port of 1024 or more.",
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidInput(
                    f"{listen} is not an address of this machine, so nothing can listen on it.",
                    hint="Give --listen one of this machine's addresses (see `ip addr`), or "
                    "0.0.0.0 for all of them.",
                ) from None
            raise Conflict(
                f"Port {port} on {listen} is taken by another program: {exc.strerror}.",
                hint="Pick another --port, or stop what holds it (see `ss -ltnp`).",
            ) from None


def short_control_root() -> Path:
    """For homes whose state directory is too deep for a unix socket path (108 bytes): a private
    directory of ours on a short path, /run/user/UID/vpn-manager (or /tmp/vpn-manager-UID), made
    0700 and refused if someone else owns it or it is a symlink."""
    import os
    import stat

    uid = os.getuid()
    runtime = Path(f"/run/user/{uid}")
    root = runtime / "vpn-manager" if runtime.is_dir() else Path(f"/tmp/vpn-manager-{uid}")
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    found = root.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid or found.st_mode & 0o077:
        raise EngineError(
            f"{root} is not a private directory of this user: engine control sockets cannot "
            "go there.",
            hint="Remove it, or use a shorter VPN_HOME (or XDG_STATE_HOME).",
        )
    return root


def default_host(listen: str) -> str:
    """The address clients use when --host is not given: the listen address if it is specific,
    else the source address of this machine's default route (found by connecting a UDP socket,
    which sends no packet)."""
    if listen not in ("0.0.0.0", "::"):
        return listen
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address: str = sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return address


class ServerService:
    def __init__(
        self,
        db: Database,
        paths: Paths,
        clock: Callable[[], datetime] = utcnow,
        runtime: NativeRuntime | None = None,
        docker: DockerDefaults | None = None,
        engines: Callable[[str, Commands | None], Engine] = engine_for,
        runtimes: Runtimes | None = None,
    ) -> None:
        self.db = db
        self.paths = paths
        self.now = clock
        self.runtime = runtime or NativeRuntime(paths.run_dir, paths.logs_dir)
        if docker is None:  # the built-in defaults (the service always passes its own)
            from vpn_manager.settings import DockerSettings

            docker = DockerSettings()
        self.docker_settings = docker
        # `engines` (protocol → engine) and `runtimes` (which runtime a server has): the real
        # ones unless a test hands in its own.
        self.engine_for = engines
        self.runtimes = runtimes or Runtimes(
            self.runtime, str(paths.data_dir), paths.logs_dir, paths.run_dir, docker
        )
        self.applied: list[Applied] = []  # what user changes did, for the front end to tell

    # -- runtimes ------------------------------------------------------------------------------
    def docker(self, host: str | None = None) -> DockerRuntime:
        """The Docker runtime for one engine (None: settings' docker.host, else the default);
        the SDK is imported and the engine reached only now."""
        return self.runtimes.docker(host)

    def runtime_of(self, spec: ServerSpec) -> Runtime:
        return self.runtimes.runtime_of(spec)

    def on_remote_engine(self, spec: ServerSpec) -> bool:
        """Whether the server runs on another machine (decided from its address alone, without
        reaching it)."""
        return self.runtime_of(spec).is_remote()

    async def reach(self, spec: ServerSpec) -> ServerSpec:
        """The server as this machine reaches its engine's APIs and port (the same spec with
        its private control directory, unless it runs on a remote Docker engine)."""
        return await self.runtime_of(spec).reach(spec, self.where(spec.name))

    def engine(self, spec: ServerSpec) -> Engine:
        """The server's engine, running its helper commands (WireGuard's `ip`, `wg`, `nft`)
        where the server runs: on this machine, or inside its container."""
        return self.engine_for(spec.protocol, self.runtime_of(spec).commands(spec.name))

    def state_of(self, row: ServerRow) -> ProcessState:
        """Is a server's engine running, wherever it runs (for the service and metrics)."""
        from vpn_manager.storage import servers as repo

        return self.runtime_of(repo.spec_of(row)).state(row.name)

    def is_running(self, row: ServerRow) -> bool:
        """state_of(row).running, with a Docker engine that cannot be reached counted as not."""
        try:
            return self.state_of(row).running
        except VpnError:
            return False

    def placed(self, spec: ServerSpec) -> tuple[ServerSpec, Files]:
        """The server as its engine sees it where it runs (Runtime.placed)."""
        return self.runtime_of(spec).placed(spec, self.where(spec.name))

    def where(self, name: str) -> ServerFiles:
        """Where a server's files are, for its runtime."""
        return ServerFiles(self.files(name), self.keys_dir(name), lambda: self.control_dir(name))

    # -- files ---------------------------------------------------------------------------------
    def keys_dir(self, name: str) -> Path:
        return entry(self.paths.keys_dir, name)

    def control_dir(self, name: str) -> Path:
        """The server's private directory (0700) for its engine's unix-socket control APIs. A name
        that would make the socket path too long for a unix socket (108 bytes) is replaced by a
        short hash of it."""
        found = entry(self.paths.run_dir / "api", name)
        short = hashlib.sha256(name.encode()).hexdigest()[:12]
        if len(str(found).encode()) > CONTROL_DIR_MAX:
            found = self.paths.run_dir / "api" / short
        if len(str(found).encode()) > CONTROL_DIR_MAX:  # a home deep in the file system
            found = short_control_root() / self.paths.home_id / short
        return found

    def files(self, name: str) -> Files:
        return Files(
            config=entry(self.paths.rendered_dir, name) / "config.json",
            access_log=entry(self.paths.logs_dir, name, ".access.log"),
            error_log=entry(self.paths.logs_dir, name, ".error.log"),
        )

    def turn(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """This server's turn for changing its engine (see services/locks.py)."""
        return server_turn(self.paths.run_dir, name)

    def _applied_file(self, name: str) -> Path:
        return entry(self.paths.run_dir, name, ".applied")

    def _basis(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        """What the running engine must have loaded for the database's view of it: the config
        without users where users change live (they are compared one by one), else all of it."""
        return self._render(engine, spec, [] if engine.live_users(spec) else clients)

    def _record_applied(
        self, spec: ServerSpec, basis: str, state: ProcessState | None = None
    ) -> None:
        """Note what the engine was (re)started or reloaded with, for converge() to compare; for
        a container also which start of it that was (a container restarted behind our back, by
        hand or by Docker, has lost what its start set up outside the config)."""
        epoch = self.runtime_of(spec).epoch(spec.name, state)
        atomic_write(self._applied_file(spec.name), f"{digest(basis)}\n{epoch}\n")

    def _applied(self, name: str) -> tuple[str, str] | None:
        """The recorded (digest, epoch) of what the engine runs; None if nothing is recorded."""
        try:
            lines = self._applied_file(name).read_text().splitlines()
        except FileNotFoundError:
            return None
        return (lines[0].strip() if lines else "", lines[1].strip() if len(lines) > 1 else "")

    def _forget_applied(self, name: str) -> None:
        self._applied_file(name).unlink(missing_ok=True)

    def _launch(self, engine: Engine, spec: ServerSpec) -> Launch:
        return self.runtime_of(spec).launch(engine, spec, self.where(spec.name))

    # -- reading -------------------------------------------------------------------------------
    async def all(self) -> list[Server]:
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            rows = await repo.list_servers(session)
        return [self._observed(row, repo.read_model(row, n)) for row, n in rows]

    def _observed(self, row: ServerRow, server: Server) -> Server:
        try:
            running = self.state_of(row).running
        except VpnError:  # its Docker engine is unreachable: reconcile() says so
            running = False
        return server.model_copy(update={"running": running})

    async def get(self, name: str) -> Server:
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            row = await repo.server_row(session, name)
            counts = {r.id: n for r, n in await repo.list_servers(session)}
            return self._observed(row, repo.read_model(row, counts.get(row.id, 0)))

    async def status(self, name: str) -> ServerStatus:
        from vpn_manager.models.server import ContainerInfo, ServerStatus
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            row = await repo.server_row(session, name)
            spec = repo.spec_of(row)
            desired = DesiredState(row.desired)
            clients = await repo.clients(session, row.id)
        runtime = self.runtime_of(spec)
        state = runtime.state(name)
        engine = self.engine(spec)
        health = None
        warnings: list[str] = []
        if state.running:
            reached = await self.reach(spec)
            health = await engine.probe(reached)
            if health.healthy:  # an engine that does not answer is not asked for its users
                warnings = await self._out_of_step(engine, spec, state, reached, clients)
            warnings += await self.control_warnings(spec)
        info = await asyncio.to_thread(runtime.stats, name)
        container = ContainerInfo.model_validate(info) if info else None
        return ServerStatus(
            name=name,
            desired=desired,
            running=state.running,
            healthy=bool(health and health.healthy),
            pid=state.pid,
            port_open=bool(health and health.port_open),
            api_ok=bool(health and health.api_ok),
            detail=health.detail if health else "not running",
            rss_bytes=state.rss_bytes,
            started_at=state.started_at,
            config_file=str(self.files(name).config),
            log_file=str(self.runtime.log_file(name)),
            runtime=RuntimeKind(spec.runtime),
            container=container,
            warnings=warnings,
        )

    async def _out_of_step(
        self,
        engine: Engine,
        spec: ServerSpec,
        state: ProcessState,
        reached: ServerSpec,
        clients: list[Client],
    ) -> list[str]:
        """What a running engine lacks or has beyond the database, found by looking (its
        container, the users it serves), each with the fix; the service fixes it by itself."""
        fix = "`vpn serve --once` (or a running `vpn serve`) fixes it, or "
        fix += f"`vpn server restart {spec.name}`"
        found = []
        remade = self.runtime_of(spec).remade_because(engine, spec, self.where(spec.name), state)
        if remade is not None:
            found.append(f"It is out of step: {remade}. {fix}.")
        if engine.live_users(spec):
            try:
                have = await engine.users(reached)
            except VpnError as exc:
                return [*found, f"Its engine could not list its users: {exc.message}"]
            if have is not None:
                want = {engine_identity(c) for c in clients}
                if missing := len(want - have):
                    found.append(f"Its engine lacks {_users(missing)} of the database's: {fix}.")
                if extra := len(have - want):
                    found.append(f"Its engine has {_users(extra)} the database has not: {fix}.")
        return found

    async def usage(self, name: str) -> dict[str, tuple[int, int]]:
        """Per-user (upload, download) bytes as the running engine counts them now (since its
        start). Keys are user names; counters of users no longer known are left out."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            row = await repo.server_row(session, name)
            spec = repo.spec_of(row)
            clients = await repo.identities(session, row.id)
        if not self.runtime_of(spec).state(name).running:
            raise EngineError(f"{name} is not running.", hint=f"vpn server start {name}")
        counters = await self.engine(spec).counters(await self.reach(spec))
        owner = owners(clients)
        usage: dict[str, tuple[int, int]] = {}
        for counter in counters:
            if counter.user in owner:
                name = owner[counter.user].name
                up, down = usage.get(name, (0, 0))
                usage[name] = (up + counter.up, down + counter.down)
        return usage

    async def read_logs(self, name: str, lines: int = 100) -> list[str]:
        """The end of a server's logs wherever it runs: natively as logs() reads them; under
        Docker the container's output (after that of the containers it had before)."""
        spec = await self._spec(name)
        files = self.files(name)
        also = [files.error_log, files.access_log]
        return await asyncio.to_thread(self.runtime_of(spec).logs, name, lines, also)

    def logs(self, name: str, lines: int = 100) -> list[str]:
        """The end of a native server's logs: the engine's output and its log files (for a
        Docker server only the output of its removed containers: use read_logs)."""
        files = self.files(name)
        return self.runtime.logs(name, lines, [files.error_log, files.access_log])

    async def follow(self, name: str, lines: int = 10) -> Iterator[str]:
        """The end of a server's logs, then new lines as they come (a blocking iterator)."""
        spec = await self._spec(name)
        files = self.files(name)
        return self.runtime_of(spec).follow(name, lines, [files.error_log, files.access_log])

    async def _spec(self, name: str) -> ServerSpec:
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            return repo.spec_of(await repo.server_row(session, name))

    async def reconcile(self) -> list[str]:
        """Docker servers and containers out of step, one sentence each with the fix:
        containers labelled as this home's but owned by no server, servers whose container is
        gone, has stopped while they should run, is off its network or was made for another
        launch, and Docker engines that cannot be reached (runtimes/docker/census.py)."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            rows = [row for row, _ in await repo.list_servers(session)]
        specs = [repo.spec_of(row) for row in rows]
        wanted = {row.name for row in rows if row.desired == DesiredState.RUNNING.value}

        def remade(spec: ServerSpec, state: ProcessState) -> str | None:
            runtime = self.runtime_of(spec)
            return runtime.remade_because(self.engine(spec), spec, self.where(spec.name), state)

        return await self.runtimes.out_of_step(specs, wanted, remade)

    async def export_compose(self) -> str:
        """A docker-compose.yml that runs this home's Docker servers as the runtime does: same
        images, commands, labels, ports, read-only mounts, health checks and network."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            specs = [repo.spec_of(row) for row, _ in await repo.list_servers(session)]
        return self.runtimes.export_compose(
            specs, lambda s: self.engine_for(s.protocol, None), self.where
        )

    # -- bringing engines back in line with the database ---------------------------------------
    async def converge(self, name: str) -> list[str]:
        """After whatever happened (a command killed half-way, an engine that lost its users):
        make the server's engine, its rendered config and the database agree, the database
        being right. Returns what it fixed, in words."""
        async with self.turn(name):
            return await self._converge(name)

    async def _converge(self, name: str) -> list[str]:
        """converge() with the server's turn already held."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            try:
                row = await repo.server_row(session, name)
            except NotFound:
                return []
            clients = await repo.clients(session, row.id)
        spec = repo.spec_of(row)
        engine = self.engine(spec)
        fixed = self._sweep(name)
        state = self.runtime_of(spec).state(name)
        if row.desired != DesiredState.RUNNING.value or not state.running:
            if state.running:
                await self._stop(engine, spec)
                fixed.append("stopped it: it is meant to be stopped")
            if self._rewrite(engine, spec, clients):
                fixed.append("rewrote its config from the database")
            return fixed  # one that should run is started by the service, with a backoff
        basis = self._basis(engine, spec, clients)
        if not self._runs(spec, basis, state):
            await self._apply_restart(engine, spec, clients)
            return [*fixed, "restarted it: its engine ran another config than the database's"]
        runtime = self.runtime_of(spec)
        remade = runtime.remade_because(engine, spec, self.where(name), state)
        if remade is not None:
            await self._apply_restart(engine, spec, clients)
            return [*fixed, f"made its container again: {remade}"]
        recorded = self._applied(name)
        epoch = runtime.epoch(name, state)  # "" where nothing but us restarts the engine
        if epoch and recorded is not None and not recorded[1]:
            self._record_applied(spec, basis, state)  # recorded by an earlier version
        elif epoch and recorded is not None and recorded[1] != epoch:
            # Restarted behind our back (`docker restart`, its restart policy, a reboot): what
            # its start set up outside the config (live users, a WireGuard interface's address
            # and NAT) is gone. Set it up again; users are compared one by one below as well.
            await self._wait_healthy(engine, spec)
            await engine.after_start(await self.reach(spec), clients)
            self._record_applied(spec, basis, state)
            fixed.append("set up again what its start sets up: its container was restarted")
        if self._rewrite(engine, spec, clients):
            await runtime.put_files(name, self.where(name))
            fixed.append("rewrote its config from the database")
        if not engine.live_users(spec):
            return fixed
        reached = await self.reach(spec)
        have = await engine.users(reached)
        if have is None:
            return fixed
        want = {engine_identity(c): c for c in clients}
        missing = [c for identity, c in want.items() if identity not in have]
        extra = [client_of(identity) for identity in sorted(have) if identity not in want]
        if missing:
            await engine.add_clients(reached, missing)
            fixed.append(f"gave its engine {_users(len(missing))} it did not have")
        if extra:
            await engine.remove_clients(reached, extra, self.files(name))
            fixed.append(f"removed {_users(len(extra))} from its engine that the database has not")
        return fixed

    def _runs(self, spec: ServerSpec, basis: str, state: ProcessState) -> bool:
        """Does the running engine have `basis` loaded? Known from what the last start or reload
        recorded; with no record (a start or reload cut short, or a server started by an
        earlier version), only if the engine started after its config was last written and
        that config is the basis."""
        recorded = self._applied(spec.name)
        if recorded is not None:
            return recorded[0] == digest(basis)
        config = self.files(spec.name).config
        try:
            written = datetime.fromtimestamp(config.stat().st_mtime, UTC)
            text = config.read_text()
        except OSError:
            return False
        if state.started_at is None or state.started_at < written or text != basis:
            return False
        self._record_applied(spec, basis, state)
        return True

    def _rewrite(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> bool:
        """Write the config the database renders, if the file differs. Returns whether it did."""
        config = self.files(spec.name).config
        text = self._render(engine, spec, clients)
        try:
            if config.read_text() == text:
                return False
        except OSError:
            pass
        atomic_write(config, text)
        return True

    def _sweep(self, name: str) -> list[str]:
        """Remove what commands killed half-way left in a server's directories: validation
        scratch directories and atomic writes' temp files (call with the server's turn)."""
        swept = 0
        for folder in (self.files(name).config.parent, self.keys_dir(name)):
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                if item.name.startswith(".validate-") and item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                    swept += 1
                elif item.name.startswith(".") and item.name.endswith(".tmp"):
                    item.unlink(missing_ok=True)
                    swept += 1
        swept += remove_temps(self._applied_file(name))
        launcher_temp = entry(self.paths.run_dir, name, ".pid.tmp")  # runtimes/launch.py
        if launcher_temp.exists():
            launcher_temp.unlink(missing_ok=True)
            swept += 1
        return [f"removed {swept} temp files left by an interrupted command"] if swept else []

    async def stop_orphans(self, specs: Sequence[ServerSpec]) -> list[str]:
        """Engine processes of this home that no server in the database owns (a command killed
        between starting one and recording it) are stopped, this home's containers that no
        server owns are removed on every Docker engine the home has used, and files of servers
        that are not in the database are removed. Servers whose turn someone holds are left
        alone: they are being made or removed right now."""
        from vpn_manager.storage import servers as repo

        known = {spec.name for spec in specs}

        run_dir = self.paths.run_dir
        candidates = {p.name.removesuffix(".pid") for p in run_dir.glob("*.pid")}
        for parent in (self.paths.rendered_dir, self.paths.keys_dir):
            if parent.is_dir():
                candidates |= {p.name for p in parent.iterdir() if p.is_dir()}
        found = []
        for name in sorted(candidates - known):
            if turn_taken(run_dir, name):
                continue
            async with self.turn(name):
                async with self.db.reading() as session:
                    if await repo.name_taken(session, name):
                        continue  # made since the list was read
                if (run_dir / f"{name}.pid").exists() and self.runtime.state(name).running:
                    with contextlib.suppress(VpnError):
                        await self.runtime.stop(name)
                        found.append(f"stopped an engine of this home that no server owns ({name})")
                (run_dir / f"{name}.pid").unlink(missing_ok=True)
                if (self.paths.rendered_dir / name).is_dir() or self.keys_dir(name).is_dir():
                    found.append(f"removed the files of a server that does not exist ({name})")
                self._forget_files(name)
        self.runtimes.tidy()
        if self.runtimes.ever_used() or self.runtimes.used(specs):
            found += await self._remove_strays(list(specs))
        return found

    async def _remove_strays(self, specs: list[ServerSpec]) -> list[str]:
        """Remove this home's containers that no server owns (a server's row lost, an install
        killed at the wrong moment), on every Docker engine the home has used; then forget an
        engine where nothing of this home is left (its network goes too). A server whose turn
        someone holds is being made or removed right now: its container is left alone."""
        from vpn_manager.storage import servers as repo

        seen, _ = await self.runtimes.census(specs)
        used = self.runtimes.used(specs)
        removed = []
        for place in seen:
            for server, container in sorted(place.strays.items()):
                if turn_taken(self.paths.run_dir, server):
                    continue
                async with self.turn(server):
                    async with self.db.reading() as session:
                        if await repo.name_taken(session, server):
                            spec = repo.spec_of(await repo.server_row(session, server))
                            if self.runtimes.key_of(spec) == place.key:
                                continue  # made since the census
                    await asyncio.to_thread(place.runtime.discard, container)
                del place.found[server]
                removed.append(
                    f"removed container {container} of this home that no server owns "
                    f"(on {place.shown})"
                )
            if not place.found and place.key not in used:
                await asyncio.to_thread(place.runtime.forget)
                self.runtimes.forget_engine(place.key)
        return removed

    # -- lifecycle -----------------------------------------------------------------------------
    async def install(self, create: ServerCreate) -> Server:
        """Make the server's keys, commit its row, then start it (validated, probed). If the start
        fails or is interrupted, the engine is stopped and the row and files are removed again;
        if this process dies after the commit, the service starts the server on its next round."""
        from vpn_manager.storage import servers as repo

        engine = self.engine_for(create.protocol, None)
        async with self.turn(create.name):
            async with self.db.reading() as session:
                if await repo.name_taken(session, create.name):
                    raise Conflict(
                        f"A server named {create.name!r} already exists.",
                        hint="Pick another --name.",
                    )
                taken = await repo.ports_in_use(session)
                await subnets.refuse_overlap(session, create)
            if create.port in taken:
                raise Conflict(
                    f"Port {create.port} is already used by server {taken[create.port]}."
                )
            runtime = self.runtimes.of(create.runtime, create.docker_host)
            # A Docker engine is reached now, so that a bad host or an engine without an image
            # fails before anything is made.
            placement = runtime.placement(engine.name, create.image)
            if placement["docker_host"] is None or placement["docker_host"].startswith("unix://"):
                check_port_free(create.listen, create.port, udp=create.protocol in UDP_PROTOCOLS)
            host = create.host
            if host is None:  # on a remote Docker engine: clients connect to that host
                host = runtime.address()
            create = create.model_copy(update={"host": host or default_host(create.listen)})
            inserted: ServerSpec | None = None
            try:
                keys_dir = self.keys_dir(create.name)
                keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                settings, secret = engine.new_server(create, free_port, keys_dir)
                values = {
                    "name": create.name,
                    "protocol": create.protocol.value,
                    "engine": engine.name,
                    "runtime": create.runtime.value,
                    **placement,
                    "listen": create.listen,
                    "port": create.port,
                    "host": create.host,
                    "desired": DesiredState.RUNNING.value,
                    "settings": settings,
                    "secret": secret,
                }
                async with self.db.session() as session:
                    if await repo.name_taken(session, create.name):
                        raise Conflict(f"A server named {create.name!r} was just made elsewhere.")
                    inserted = repo.spec_of(await repo.insert_server(session, values, self.now()))
                await self._apply_restart(self.engine(inserted), inserted, [])
            except BaseException:
                with no_interrupt():
                    await self._undo_install(create.name, inserted)
                raise
        return await self.get(create.name)

    async def _undo_install(self, name: str, inserted: ServerSpec | None) -> None:
        """After a failed or interrupted install: no engine, no row, no files are left."""
        from vpn_manager.storage import servers as repo

        if inserted is not None:
            with contextlib.suppress(VpnError):
                await self._stop(self.engine(inserted), inserted)
            async with self.db.session() as session:
                with contextlib.suppress(NotFound):
                    await repo.delete_server(session, await repo.server_row(session, name))
        self._forget_files(name)
        if inserted is not None:
            with contextlib.suppress(VpnError):  # the network, if it was made for this server only
                await asyncio.to_thread(self.runtime_of(inserted).forget)

    async def start(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=False)
        return await self.status(name)

    async def restart(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=True)
        return await self.status(name)

    async def stop(self, name: str) -> bool:
        from vpn_manager.storage import servers as repo

        async with self.turn(name):
            async with self.db.session() as session:
                row = await repo.server_row(session, name)
                await repo.set_server(session, row, self.now(), desired=DesiredState.STOPPED.value)
                spec = repo.spec_of(row)
            return await self._stop(self.engine(spec), spec)

    async def _stop(self, engine: Engine, spec: ServerSpec) -> bool:
        """Stop the engine process, then undo what its start set up outside it (rules)."""
        async with self._last_reading(engine, spec):
            stopped = await self.runtime_of(spec).stop(spec.name)
        await engine.after_stop(spec)
        await guard.release(str(self.paths.data_dir), spec.name)
        return stopped

    @asynccontextmanager
    async def _last_reading(self, engine: Engine, spec: ServerSpec) -> AsyncIterator[None]:
        """Around a stop or reload (which resets the engine's counters): read them once more
        for the next poll to count (see pending_readings.py); a failed read only loses what it
        would have added since the last poll."""
        async with pending_readings.poll_lock(self.paths.run_dir):
            state = self.runtime_of(spec).state(spec.name)
            if state.running:
                try:
                    counters = await engine.counters(await self.reach(spec))
                except VpnError as exc:
                    log.warning("last reading of %s failed: %s", spec.name, exc.message)
                else:
                    pending_readings.keep(self.paths.run_dir, spec.name, state.epoch, counters)
            yield

    async def remove(self, name: str) -> None:
        """Stopped first (and that committed), then the row and the files: a remove killed
        half-way leaves a stopped server that `vpn server remove` finishes, never one that the
        service would start again."""
        from vpn_manager.storage import servers as repo

        async with self.turn(name):
            async with self.db.session() as session:
                row = await repo.server_row(session, name)
                await repo.set_server(session, row, self.now(), desired=DesiredState.STOPPED.value)
                spec = repo.spec_of(row)
            await self._stop(self.engine(spec), spec)
            async with self.db.session() as session:
                await repo.delete_server(session, await repo.server_row(session, name))
            self._forget_files(name)
        await asyncio.to_thread(self.runtime_of(spec).forget)

    async def rotate_keys(self, name: str) -> Server:
        """New REALITY keys and short ids: every user's link changes."""

        def change(before: ServerSpec) -> dict[str, object]:
            settings, secret = self.engine_for(before.protocol, None).rotate_keys(before)
            return {"settings": settings, "secret": secret}

        await self._reconfigure(name, change)
        return await self.get(name)

    async def update(
        self,
        name: str,
        *,
        port: int | None = None,
        sni: str | None = None,
        dest: str | None = None,
        host: str | None = None,
    ) -> Server:
        """Change a server's settings: validated, applied with a restart, rolled back on failure."""
        from vpn_manager.models import validated
        from vpn_manager.models.server import ServerChange

        update = validated(ServerChange, {"port": port, "sni": sni, "dest": dest, "host": host})

        def change(before: ServerSpec) -> dict[str, object]:
            settings = dict(before.settings)
            if update.sni is not None or update.dest is not None:
                if before.protocol != Protocol.VLESS_REALITY.value:
                    raise InvalidInput("--sni and --dest apply to vless-reality servers.")
                settings.update(
                    {k: v for k, v in (("sni", update.sni), ("dest", update.dest)) if v}
                )
            changes: dict[str, object] = {"settings": settings}
            if update.port is not None:
                changes["port"] = update.port
            if update.host is not None:
                changes["host"] = update.host
            return changes

        await self._reconfigure(name, change)
        return await self.get(name)

    async def _reconfigure(
        self, name: str, change: Callable[[ServerSpec], dict[str, object]]
    ) -> None:
        """A settings change: committed, then a validated restart if the server should run
        (otherwise only the re-rendered config, for its next start). If the restart fails the
        engine is back on its last good config and the row is put back; if this process dies
        half-way, the service's next round restarts the engine on what the database says."""
        from vpn_manager.storage import servers as repo

        async with self.turn(name):
            async with self.db.session() as session:
                row = await repo.server_row(session, name)
                before = repo.spec_of(row)
                await repo.set_server(session, row, self.now(), **change(before))
                spec = repo.spec_of(row)
                clients = await repo.clients(session, row.id)
                desired = row.desired
            engine = self.engine(spec)
            try:
                if desired == DesiredState.RUNNING.value:
                    await self._apply_restart(engine, spec, clients, before)
                else:
                    self._write_config(engine, spec, clients)
            except BaseException as exc:
                with no_interrupt():
                    async with self.db.session() as session:
                        row = await repo.server_row(session, name)
                        old = {"port": before.port, "host": before.host}
                        old |= {"settings": before.settings, "secret": before.secret}
                        await repo.set_server(session, row, self.now(), **old)
                    # Interrupted (not refused): the engine was not rolled back.
                    if not isinstance(exc, EngineError):
                        await self._converge(name)
                raise

    async def _set_desired(self, name: str, desired: DesiredState, *, restart: bool) -> None:
        from vpn_manager.storage import servers as repo

        async with self.turn(name):
            async with self.db.session() as session:
                row = await repo.server_row(session, name)
                was = row.desired
                await repo.set_server(session, row, self.now(), desired=desired.value)
                spec = repo.spec_of(row)
                clients = await repo.clients(session, row.id)
            if not (restart or not self.runtime_of(spec).state(name).running):
                return
            try:
                await self._apply_restart(self.engine(spec), spec, clients)
            except BaseException:
                with no_interrupt():
                    async with self.db.session() as session:
                        row = await repo.server_row(session, name)
                        await repo.set_server(session, row, self.now(), desired=was)
                raise

    # -- the two kinds of apply ----------------------------------------------------------------
    def _render(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        placed, files = self.placed(spec)
        return engine.render(placed, clients, files)

    def _write_config(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        files = self.files(spec.name)
        text = self._render(engine, spec, clients)
        atomic_write(files.config, text)
        return text

    async def _apply_restart(
        self,
        engine: Engine,
        spec: ServerSpec,
        clients: list[Client],
        before: ServerSpec | None = None,
    ) -> None:
        """render → validate → atomic write → restart → probe; roll back on any failure.
        `before` is the server as it was (the database rolls back to it with the caller's
        transaction), so the rolled-back engine is probed where it really listens."""
        files = self.files(spec.name)
        files.config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = self._render(engine, spec, clients)
        await engine.validate(text, files.config.parent)
        previous = files.config.read_text() if files.config.exists() else None
        self._forget_applied(spec.name)  # until the engine runs the new file, nothing is known
        atomic_write(files.config, text)
        try:
            await self._restart_and_probe(engine, spec, clients)
            await engine.after_start(await self.reach(spec), clients)
            self._record_applied(spec, self._basis(engine, spec, clients))
        except EngineError as exc:
            if previous is None:
                await self._stop(engine, spec)
                files.config.unlink(missing_ok=True)
                raise
            atomic_write(files.config, previous)
            old = before or spec
            try:
                await self._restart_and_probe(engine, old, clients)
                await engine.after_start(await self.reach(old), clients)
                self._record_applied(old, self._basis(engine, old, clients))
            except EngineError as again:
                raise EngineError(
                    f"{exc.message} Rolling back failed too: {again.message}",
                    hint=f"See `vpn server logs {spec.name}`.",
                ) from None
            raise EngineError(
                f"{exc.message} The change was rolled back; {spec.name} serves with its last "
                "good config.",
                hint=exc.hint,
            ) from None

    async def _restart_and_probe(
        self, engine: Engine, spec: ServerSpec, clients: list[Client]
    ) -> None:
        await self._stop(engine, spec)
        engine.before_start(spec, clients, self.files(spec.name))
        self._fresh_control_dir(spec.name)
        if not self.on_remote_engine(spec):  # a remote engine's ports are out of our reach
            # Before the engine starts: its TCP control ports kept to our uid (engines/guard.py).
            ports = engine.control_ports(self.placed(spec)[0])
            warning = await guard.protect(str(self.paths.data_dir), spec.name, ports)
            if warning:
                log.warning("%s: %s", spec.name, warning)
        await self.runtime_of(spec).start(self._launch(engine, spec))
        await self._wait_healthy(engine, spec)

    def _fresh_control_dir(self, name: str) -> None:
        """The server's private control directory, 0700 and empty: an engine that was killed
        leaves its socket behind, and Xray will not listen where a socket file is."""
        control = self.control_dir(name)
        shutil.rmtree(control, ignore_errors=True)
        self.paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        control.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        control.mkdir(mode=0o700)
        control.chmod(0o700)  # whatever the umask

    async def guard_running(self, rows: Sequence[ServerRow]) -> list[str]:
        """For servers running now: make their firewall tables again where they are missing (a
        reboot brought a container back before us, the ruleset was flushed). Returns the names
        of the servers whose table was made; one nft call when none is missing, none when no
        server has TCP control ports."""
        from vpn_manager.storage import servers as repo

        home = str(self.paths.data_dir)
        wanted = {}
        for row in rows:
            spec = repo.spec_of(row)
            if not self.on_remote_engine(spec):  # tunnel ends: guarded when reached
                ports = self.engine(spec).control_ports(self.placed(spec)[0])
                if ports:
                    wanted[spec.name] = ports
        present = await guard.tables() if wanted else None
        if present is None:
            return []
        made = []
        for name, ports in wanted.items():
            missing = guard.table(home, name) not in present
            if missing and await guard.protect(home, name, ports) is None:
                made.append(name)
        return made

    async def warnings(self, name: str) -> list[str]:
        """control_warnings() of a server by name (after an install)."""
        return await self.control_warnings(await self._spec(name))

    async def control_warnings(self, spec: ServerSpec) -> list[str]:
        """What a person must know about who can reach the server's control APIs: nothing when
        they are on a private unix socket or kept to us by the firewall."""
        ports = self.engine(spec).control_ports(self.placed(spec)[0])
        if self.on_remote_engine(spec):
            return [guard.remote(ports)] if ports else []
        found = await guard.warning(str(self.paths.data_dir), spec.name, ports)
        return [found] if found else []

    async def _wait_healthy(self, engine: Engine, spec: ServerSpec) -> Health:
        deadline = time.monotonic() + HEALTH_DEADLINE
        health = Health(False, False, "not probed")
        reached: ServerSpec | None = None
        while time.monotonic() < deadline:
            runtime = self.runtime_of(spec)
            code = runtime.exited(spec.name)
            if code is not None or not runtime.state(spec.name).running:
                raise EngineError(
                    f"The engine for {spec.name} exited"
                    + (f" with code {code}" if code is not None else "")
                    + _EXIT_REASONS.get(code or 0, "."),
                    hint=f"See `vpn server logs {spec.name}`.",
                )
            reached = reached or await self.reach(spec)
            health = await engine.probe(reached)
            if health.healthy:
                return health
            await asyncio.sleep(0.02)
        raise EngineError(
            f"{spec.name} did not become healthy within {HEALTH_DEADLINE:.0f} s: {health.detail}.",
            hint=f"See `vpn server logs {spec.name}`.",
        )

    def _forget_files(self, name: str) -> None:
        try:
            files, keys_dir = self.files(name), self.keys_dir(name)
        except InvalidInput:  # a name from before names were checked: nothing of ours is there
            return
        # The rendered directory holds the config and what the engine keeps beside it (sing-box's
        # Shadowsocks user list and cache).
        shutil.rmtree(files.config.parent, ignore_errors=True)
        shutil.rmtree(keys_dir, ignore_errors=True)
        shutil.rmtree(self.control_dir(name), ignore_errors=True)
        pending_readings.done(self.paths.run_dir, name)  # a last reading of a server that is gone
        self._forget_applied(name)

    # -- users on servers ----------------------------------------------------------------------
    async def grant(
        self, user_names: Sequence[str], server: str, password: str | None = None
    ) -> list[str]:
        """Give users credentials on a server; applied live when it runs. Returns who was new."""
        from vpn_manager.storage import servers as repo

        async def work(session: AsyncSession) -> list[str]:
            return await self.grant_in(session, user_names, server, password)

        async def undo(session: AsyncSession, added: list[str]) -> None:
            from vpn_manager.storage import users as user_repo

            row = await repo.server_row(session, server)
            for user_id in (await user_repo.ids_for(session, added)).values():
                await repo.remove_credential(session, user_id, row.id)

        return await self.commit_then_apply(work, undo)

    async def grant_in(
        self,
        session: AsyncSession,
        user_names: Sequence[str],
        server: str,
        password: str | None = None,
    ) -> list[str]:
        """grant() inside the caller's transaction (so `vpn user add --server` is all or none);
        the engine gets the new users when the caller settles (commit_then_apply)."""
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        row = await repo.server_row(session, server)
        spec = repo.spec_of(row)
        engine = self.engine(spec)
        ids = await user_repo.ids_for(session, user_names)
        holders = await repo.holders(session, row.id, list(ids.values()))
        added = [name for name in user_names if ids[name] not in holders]
        taken = [c.secret for c, _ in await repo.clients_and_status(session, row.id)]
        grants = []
        for name in added:
            credential = engine.new_credential(spec, password, taken)
            taken.append(credential)
            grants.append((ids[name], credential))
        await repo.add_credentials(session, row, grants, self.now())
        # The active ones among the new (read back: no one else's credentials twice).
        fresh = await repo.clients(session, row.id, user_ids=[user_id for user_id, _ in grants])
        pending_of(session).setdefault(row.id, Pending()).note([], fresh)
        return added

    async def access(self, user_name: str, server: str | None = None) -> list[Access]:
        """A user's ways in: for each server they hold credentials on (or the one named), the
        share link and what a client needs."""
        from vpn_manager.links import share_link, trust_note
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        async with self.db.reading() as session:
            user_id = (await user_repo.ids_for(session, [user_name]))[user_name]
            rows = await repo.servers_of_user(session, user_id)
            if server is not None:
                rows = [(r, s) for r, s in rows if r.name == server]
                if not rows:
                    await repo.server_row(session, server)  # NotFound if no such server
                    raise NotFound(
                        f"User {user_name!r} is not on server {server!r}.",
                        hint=f"Grant it first: vpn user grant {user_name} {server}",
                    )
            if not rows:
                raise NotFound(
                    f"User {user_name!r} has no server yet.",
                    hint=f"Grant one: vpn user grant {user_name} SERVER",
                )
            out = []
            for row, secret in rows:
                client = Client(user_id, user_name, dict(secret))
                data = self.engine_for(row.protocol, None).link_data(repo.spec_of(row), client)
                out.append(
                    Access(
                        server=row.name,
                        protocol=row.protocol,
                        link=share_link(data),
                        data=data,
                        note=trust_note(data),
                    )
                )
            return out

    async def revoke(self, user_names: Sequence[str], server: str) -> None:
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        async def work(session: AsyncSession) -> list[tuple[int, dict[str, object]]]:
            row = await repo.server_row(session, server)
            ids = await user_repo.ids_for(session, user_names)
            everyone = await repo.clients_and_status(session, row.id)
            before = [c for c, active in everyone if active]
            kept = {c.user_id: c.secret for c, _ in everyone}
            holders = await repo.holders(session, row.id, list(ids.values()))
            for name in user_names:
                if ids[name] not in holders:
                    raise NotFound(
                        f"User {name!r} is not on server {server!r}.",
                        hint=f"See `vpn user show {name}`.",
                    )
                await repo.remove_credential(session, ids[name], row.id)
            after = await repo.clients(session, row.id)
            pending_of(session).setdefault(row.id, Pending()).note(before, after)
            return [(ids[name], kept[ids[name]]) for name in user_names]

        async def undo(session: AsyncSession, removed: list[tuple[int, dict[str, object]]]) -> None:
            await repo.add_credentials(
                session, await repo.server_row(session, server), removed, self.now()
            )

        await self.commit_then_apply(work, undo)

    async def clients_before(
        self, session: AsyncSession, user_ids: Sequence[int]
    ) -> dict[int, list[Client]]:
        """Before a change to these users: each of their servers with its active clients."""
        from vpn_manager.storage import servers as repo

        server_ids = await repo.server_ids_of_users(session, user_ids)
        return {sid: await repo.clients(session, sid) for sid in server_ids}

    async def resync(self, session: AsyncSession, before: dict[int, list[Client]]) -> None:
        """After users changed (status, deletion): note what each affected server must add and
        remove; the engines get it when the caller settles (commit_then_apply, settle)."""
        from vpn_manager.storage import servers as repo

        for row in await repo.servers_by_id(session, list(before)):
            after = await repo.clients(session, row.id)
            pending_of(session).setdefault(row.id, Pending()).note(before[row.id], after)

    async def commit_then_apply(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        undo: Callable[[AsyncSession, T], Awaitable[None]] | None = None,
    ) -> T:
        """A user change: `work` writes it in one short transaction, which is committed before
        any engine is touched (the database is never held across engine calls); then each
        server it touched is brought in line (settle). If that fails or is interrupted (Ctrl-C),
        `undo` writes the change back in a new transaction and the servers are brought in line
        again, so nothing is left half-applied. Without `undo` (a deletion), the change stands and
        the error says the engine still has to catch up; the service does it on its next round.
        If this process dies half-way, the service's next round finishes or removes what the
        engines got (converge)."""
        async with self.db.session() as session:
            result = await work(session)
            pending = pending_of(session)
        if not pending:
            return result
        try:
            await self.settle(pending)
        except BaseException as exc:
            if undo is None:
                if isinstance(exc, VpnError):
                    raise type(exc)(
                        f"{exc.message} The change is saved; `vpn serve` brings the engine in "
                        "line on its next round.",
                        hint=exc.hint,
                    ) from None
                raise
            told = len(self.applied)
            with no_interrupt():
                try:
                    async with self.db.session() as session:
                        await undo(session, result)
                except VpnError as failed:  # the database went away since the commit
                    raise type(failed)(
                        f"{failed.message} The change is saved (it could not be undone); `vpn "
                        "serve` brings the engines in line on its next round.",
                        hint=failed.hint,
                    ) from None
                try:
                    await self.settle({sid: p.reversed() for sid, p in pending.items()})
                    # A push still in flight when the change was interrupted may land after
                    # that: compare each engine's users with the database once more.
                    await self._converge_ids(list(pending))
                except VpnError as again:
                    log.error("undoing an interrupted change failed: %s", again.message)
            del self.applied[told:]
            raise
        return result

    async def _converge_ids(self, server_ids: list[int]) -> None:
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            names = [row.name for row in await repo.servers_by_id(session, server_ids)]
        for name in names:
            await self.converge(name)

    async def settle(
        self, pending: dict[int, Pending], *, keep_going: bool = False
    ) -> dict[str, str]:
        """Bring each server in `pending` in line with the database, one at a time, each in its
        turn: the config rendered from the users the database has now, and the engine given
        the added users that are still there and rid of the removed ones that are still gone.
        The first failure is raised, or with `keep_going` (the service) logged and returned
        (server → why) while the other servers go on."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            names = {row.id: row.name for row in await repo.servers_by_id(session, list(pending))}
        failed: dict[str, str] = {}
        for server_id, change in sorted(pending.items()):
            if server_id not in names:
                continue  # removed since
            try:
                await self._settle_one(server_id, names[server_id], change)
            except VpnError as exc:
                if not keep_going:
                    raise
                failed[names[server_id]] = exc.message
                log.error("bringing %s in line failed: %s", names[server_id], exc.message)
        return failed

    async def _settle_one(self, server_id: int, name: str, change: Pending) -> None:
        from vpn_manager.storage import servers as repo

        async with self.turn(name):
            async with self.db.reading() as session:
                rows = await repo.servers_by_id(session, [server_id])
                if not rows:
                    return
                row = rows[0]
                clients = await repo.clients(session, row.id)
            spec = repo.spec_of(row)
            now = {c.email for c in clients}
            added = [c for c in clients if c.email in change.added]
            removed = [c for email, c in change.removed.items() if email not in now]
            await self._apply_live(self.engine(spec), spec, row.desired, clients, added, removed)

    async def _apply_live(
        self,
        engine: Engine,
        spec: ServerSpec,
        desired: str,
        clients: list[Client],
        added: list[Client],
        removed: list[Client],
    ) -> None:
        """Put a new user set in force. The rendered config always gets it (a restart keeps it);
        a running engine gets it live through its API where it can, otherwise by a validated
        reload (which resets open connections). On failure the previous config is put back and the
        error propagates, so the caller's database transaction rolls back too."""
        files = self.files(spec.name)
        previous = files.config.read_text() if files.config.exists() else None
        should_run = desired == DesiredState.RUNNING.value
        running = should_run and self.runtime_of(spec).state(spec.name).running
        if not (added or removed):
            self._write_config(engine, spec, clients)
            return
        if should_run and not running:
            # Down while it should run (it crashed, or an earlier change was cut short): started
            # on the new users now, not left down behind a "saved" that reads as all is well.
            await self._apply_restart(engine, spec, clients)
            self.applied.append(Applied(spec.name, "started"))
            return
        if not running:
            self._write_config(engine, spec, clients)
            self.applied.append(Applied(spec.name, "saved"))
            return
        runtime = self.runtime_of(spec)
        if engine.live_users(spec) and (not removed or runtime.cuts_sessions(engine.name)):
            self._write_config(engine, spec, clients)
            try:
                await runtime.put_files(spec.name, self.where(spec.name))
                reached = await self.reach(spec)
                if added:
                    await engine.add_clients(reached, added)
                if removed:
                    await engine.remove_clients(reached, removed, files)
            except BaseException:
                if previous is not None:
                    atomic_write(files.config, previous)
                    with contextlib.suppress(VpnError):
                        await runtime.put_files(spec.name, self.where(spec.name))
                raise
            self.applied.append(Applied(spec.name, "live"))
            return
        if not runtime.reloads_in_place():
            # Nothing to signal (a container): started again from the new config, with the same
            # validate → probe → roll back as any restart.
            await self._apply_restart(engine, spec, clients)
            self.applied.append(Applied(spec.name, "recreated"))
            return
        await self._reload(engine, spec, clients, previous)
        self.applied.append(Applied(spec.name, "reloaded"))

    async def _reload(
        self, engine: Engine, spec: ServerSpec, clients: list[Client], previous: str | None
    ) -> None:
        """render → validate → atomic write → reload → probe; on failure the previous config is
        written back and reloaded."""
        files = self.files(spec.name)
        text = self._render(engine, spec, clients)
        await engine.validate(text, files.config.parent)
        self._forget_applied(spec.name)
        atomic_write(files.config, text)
        try:
            await self._signal_reload(engine, spec)
            self._record_applied(spec, text)  # reloads are for engines without live users
        except EngineError as exc:
            if previous is not None:
                atomic_write(files.config, previous)
                await self._signal_reload(engine, spec)
                self._record_applied(spec, previous)
            raise EngineError(f"{exc.message} The change was rolled back.", hint=exc.hint) from None

    async def _signal_reload(self, engine: Engine, spec: ServerSpec) -> None:
        state = self.runtime_of(spec).state(spec.name)
        if not state.running or state.pid is None:
            raise EngineError(f"{spec.name} stopped running.", hint=f"vpn server start {spec.name}")
        async with self._last_reading(engine, spec):
            await engine.reload(spec, state.pid)
        await self._wait_healthy(engine, spec)
