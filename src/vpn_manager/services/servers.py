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
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager.engines import guard
from vpn_manager.engines.base import Client, Engine, Files, Health, ServerSpec
from vpn_manager.engines.ports import free_port
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import Conflict, EngineError, InvalidInput, NotFound, VpnError
from vpn_manager.fsutil import atomic_write
from vpn_manager.kinds import UDP_PROTOCOLS, DesiredState, Protocol, RuntimeKind
from vpn_manager.paths import Paths
from vpn_manager.runtimes.base import (
    ContainerLaunch,
    DockerDefaults,
    Launch,
    ProcessState,
    Runtime,
)
from vpn_manager.runtimes.native import NativeRuntime
from vpn_manager.services import containers, spool
from vpn_manager.services.containers import DOCKER
from vpn_manager.storage import Database

if TYPE_CHECKING:
    # The input and output models are built where a command needs them: the long-running
    # service never does (see services/daemon.py).
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.models.server import Server, ServerCreate, ServerStatus
    from vpn_manager.runtimes.docker import DockerRuntime
    from vpn_manager.storage.orm import ServerRow

HEALTH_DEADLINE = 10.0
CONTROL_DIR_MAX = 88  # leaves 19 bytes of a unix socket path's 107 for "/" and the socket's name

log = logging.getLogger("vpn_manager.servers")


_EXIT_REASONS = {
    23: ": the engine refused the config.",
    255: ": the engine could not start, for example because its port is taken.",
}


@dataclass(frozen=True)
class Applied:
    """How a user change reached one server: "live" (through the engine's API), "reloaded" (the
    engine re-read its config; open connections were reset), or "saved" (not running: it takes
    effect on the next start)."""

    server: str
    how: str


@dataclass(frozen=True)
class Access:
    """How one user reaches one server."""

    server: str
    protocol: str
    link: str
    note: str = ""


def owners(clients: list[Client]) -> dict[str, Client]:
    """Engine-side identities → the client: protocol servers count by Client.email (user-<id>),
    proxies by user name, WireGuard by the peer's public key."""
    owner = {c.email: c for c in clients} | {c.name: c for c in clients}
    owner |= {c.secret["public_key"]: c for c in clients if "public_key" in c.secret}
    return owner


def _trust_note(protocol: str, settings: dict[str, object]) -> str:
    """Say plainly how clients trust a self-signed certificate."""
    tls = settings.get("tls")
    if not isinstance(tls, dict) or not tls.get("self_signed"):
        return ""
    if protocol == "hysteria2":
        return (
            "self-signed certificate: the link pins it (pinSHA256) for clients that check pins "
            "and says insecure=1 for those that cannot (sing-box among them)."
        )
    return (
        "self-signed certificate: this link format cannot pin it, so it tells clients not to "
        "verify the certificate (insecure). Use --cert/--key with a real certificate to avoid it."
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_port_free(listen: str, port: int, udp: bool = False) -> None:
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        try:
            sock.bind((listen, port))
        except PermissionError:
            raise InvalidInput(
                f"Port {port} needs root (ports below 1024 are privileged).",
                hint="Run as root, or pick a port of 1024 or more.",
            ) from None
        except OSError as exc:
            raise Conflict(
                f"Port {port} on {listen} is taken by another program: {exc.strerror}.",
                hint="Pick another --port, or stop what holds it (see `ss -ltnp`).",
            ) from None


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
    ) -> None:
        self.db = db
        self.paths = paths
        self.now = clock
        self.runtime = runtime or NativeRuntime(paths.run_dir, paths.logs_dir)
        if docker is None:  # the built-in defaults (the service always passes its own)
            from vpn_manager.settings import DockerSettings

            docker = DockerSettings()
        self.docker_settings = docker
        self._dockers: dict[str | None, DockerRuntime] = {}
        self.applied: list[Applied] = []  # what user changes did, for the front end to tell

    # -- runtimes ------------------------------------------------------------------------------
    def docker(self, host: str | None = None) -> DockerRuntime:
        """The Docker runtime for one engine (None: settings' docker.host, else the default);
        the SDK is imported and the engine reached only now."""
        host = host or self.docker_settings.host
        if host not in self._dockers:
            from vpn_manager.runtimes.docker import DockerRuntime

            self._dockers[host] = DockerRuntime(
                str(self.paths.data_dir),
                self.paths.logs_dir,
                host,
                run_dir=self.paths.run_dir,
                ssh=lambda: self.docker_settings.ssh,  # only for a remote engine
            )
        return self._dockers[host]

    def on_remote_engine(self, spec: ServerSpec) -> bool:
        """Whether the server runs on another machine's Docker engine (decided from its host
        alone, without reaching it)."""
        if spec.runtime != DOCKER:
            return False
        from vpn_manager.runtimes.docker import base_url_of, is_remote

        try:
            return is_remote(base_url_of(spec.docker_host or self.docker_settings.host))
        except VpnError:
            return False

    async def reach(self, spec: ServerSpec) -> ServerSpec:
        """The server as this machine reaches its engine's APIs and port (the same spec unless
        it runs on a remote Docker engine: see services/containers.py)."""
        return await containers.reached(self, spec)

    def runtime_of(self, spec: ServerSpec) -> Runtime:
        if spec.runtime == DOCKER:
            return self.docker(spec.docker_host)
        return self.runtime

    def engine(self, spec: ServerSpec) -> Engine:
        """The server's engine, running its helper commands (WireGuard's `ip`, `wg`, `nft`)
        where the server runs: on this machine, or inside its container."""
        if spec.runtime == DOCKER:
            return engine_for(spec.protocol, self.docker(spec.docker_host).commands(spec.name))
        return engine_for(spec.protocol)

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
        """The server as its engine sees it where it runs (see services/containers.py)."""
        return containers.placed(self, spec)

    def _container_launch(self, engine: Engine, spec: ServerSpec) -> ContainerLaunch:
        return containers.container_launch(self, engine, spec)

    # -- files ---------------------------------------------------------------------------------
    def keys_dir(self, name: str) -> Path:
        return self.paths.keys_dir / name

    def control_dir(self, name: str) -> Path:
        """The server's private directory (0700) for its engine's unix-socket control APIs. A name
        that would make the socket path too long for a unix socket (108 bytes) is replaced by a
        short hash of it."""
        found = self.paths.run_dir / "api" / name
        if len(str(found).encode()) > CONTROL_DIR_MAX:
            import hashlib

            found = self.paths.run_dir / "api" / hashlib.sha256(name.encode()).hexdigest()[:12]
        return found

    def files(self, name: str) -> Files:
        return Files(
            config=self.paths.rendered_dir / name / "config.json",
            access_log=self.paths.logs_dir / f"{name}.access.log",
            error_log=self.paths.logs_dir / f"{name}.error.log",
        )

    def _launch(self, engine: Engine, spec: ServerSpec) -> Launch:
        if spec.runtime == DOCKER:
            container = self._container_launch(engine, spec)
            return Launch(
                server=spec.name,
                argv=[container.binary, *container.args],
                log_file=self.runtime.log_file(spec.name),
                container=container,
            )
        return Launch(
            server=spec.name,
            argv=engine.argv(spec, self.files(spec.name).config),
            log_file=self.runtime.log_file(spec.name),
        )

    # -- reading -------------------------------------------------------------------------------
    async def all(self) -> list[Server]:
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
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

        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            counts = {r.id: n for r, n in await repo.list_servers(session)}
            return self._observed(row, repo.read_model(row, counts.get(row.id, 0)))

    async def status(self, name: str) -> ServerStatus:
        from vpn_manager.models.server import ContainerInfo, ServerStatus
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            spec = repo.spec_of(row)
            desired = DesiredState(row.desired)
        runtime = self.runtime_of(spec)
        state = runtime.state(name)
        health = await self.engine(spec).probe(await self.reach(spec)) if state.running else None
        container = None
        if spec.runtime == DOCKER:
            info = await asyncio.to_thread(self.docker(spec.docker_host).inspect, name)
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
            warnings=await self.control_warnings(spec) if state.running else [],
        )

    async def usage(self, name: str) -> dict[str, tuple[int, int]]:
        """Per-user (upload, download) bytes as the running engine counts them now (since its
        start). Keys are user names; counters of users no longer known are left out."""
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
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
        if spec.runtime == DOCKER:
            return await asyncio.to_thread(self.docker(spec.docker_host).logs, name, lines)
        return self.logs(name, lines)

    def logs(self, name: str, lines: int = 100) -> list[str]:
        """The end of a native server's logs: the engine's output and its log files (for a
        Docker server only the output of its removed containers: use read_logs)."""
        files = self.files(name)
        out = self.runtime.logs(name, lines)
        from vpn_manager.runtimes.native import tail

        return (out + tail(files.error_log, lines) + tail(files.access_log, lines))[-lines:]

    async def follow(self, name: str, lines: int = 10) -> Iterator[str]:
        """The end of a server's logs, then new lines as they come (a blocking iterator)."""
        spec = await self._spec(name)
        if spec.runtime == DOCKER:
            return self.docker(spec.docker_host).follow(name, lines)
        from vpn_manager.runtimes.native import follow_files

        files = self.files(name)
        paths = [self.runtime.log_file(name), files.error_log, files.access_log]
        return follow_files(paths, lines)

    async def _spec(self, name: str) -> ServerSpec:
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
            return repo.spec_of(await repo.server_row(session, name))

    async def heal(self, row: ServerRow) -> bool:
        """Give a container that Docker restarted what its start set up (see containers.py)."""
        return await containers.heal(self, row)

    async def reconcile(self) -> list[str]:
        """Docker servers and containers out of step, each with its fix (see containers.py)."""
        return await containers.reconcile(self)

    async def export_compose(self) -> str:
        """A docker-compose.yml for this home's Docker servers (see containers.py)."""
        return await containers.export_compose(self)

    # -- lifecycle -----------------------------------------------------------------------------
    async def install(self, create: ServerCreate) -> Server:
        from vpn_manager.storage import servers as repo

        engine = engine_for(create.protocol)
        async with self.db.session() as session:
            if await repo.name_taken(session, create.name):
                raise Conflict(
                    f"A server named {create.name!r} already exists.", hint="Pick another --name."
                )
            taken = await repo.ports_in_use(session)
        if create.port in taken:
            raise Conflict(f"Port {create.port} is already used by server {taken[create.port]}.")
        placement = self._placement(engine, create)
        if placement["docker_host"] is None or placement["docker_host"].startswith("unix://"):
            check_port_free(create.listen, create.port, udp=create.protocol in UDP_PROTOCOLS)
        host = create.host
        if host is None and create.runtime is RuntimeKind.DOCKER:
            host = self._remote_address(placement)
        create = create.model_copy(update={"host": host or default_host(create.listen)})
        keys_dir = self.keys_dir(create.name)
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            settings, secret = engine.new_server(create, free_port, keys_dir)
        except BaseException:
            self._forget_files(create.name)
            raise
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
            row = await repo.insert_server(session, values, self.now())
            spec = repo.spec_of(row)
            try:
                await self._apply_restart(self.engine(spec), spec, [])
            except BaseException:
                self._forget_files(create.name)
                if spec.runtime == DOCKER:  # the network, if it was made for this server only
                    with contextlib.suppress(VpnError):
                        await asyncio.to_thread(self.docker(spec.docker_host).forget)
                raise  # the session rolls back: no server row is left behind
        return await self.get(create.name)

    def _placement(self, engine: Engine, create: ServerCreate) -> dict[str, str | None]:
        """Where a new server runs: for Docker the image (from --image, else the engine's
        default in settings) and the Docker engine, which is reached now so that a bad host or
        an engine without an image fails before anything is made."""
        if create.runtime is not RuntimeKind.DOCKER:
            return {"image": None, "docker_host": None}
        from vpn_manager.runtimes.images import image_facts

        facts = image_facts(engine.name)
        host = create.docker_host or self.docker_settings.host
        self.docker(host).client  # noqa: B018 -- connects, or says why it cannot
        image = create.image or self.docker_settings.image(facts.setting)
        return {"image": image, "docker_host": host}

    def _remote_address(self, placement: dict[str, str | None]) -> str | None:
        """For a server on a remote Docker engine: the remote host's address (what clients
        connect to unless --host says otherwise); None on this machine."""
        runtime = self.docker(placement["docker_host"])
        return runtime.address() if runtime.remote else None

    async def start(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=False)
        return await self.status(name)

    async def restart(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=True)
        return await self.status(name)

    async def stop(self, name: str) -> bool:
        from vpn_manager.storage import servers as repo

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
        for the next poll to count (see spool.py); a failed read only loses what it would have
        added since the last poll."""
        async with spool.poll_lock(self.paths.run_dir):
            state = self.runtime_of(spec).state(spec.name)
            if state.running:
                try:
                    counters = await engine.counters(await self.reach(spec))
                except VpnError as exc:
                    log.warning("last reading of %s failed: %s", spec.name, exc.message)
                else:
                    spool.keep(self.paths.run_dir, spec.name, state.epoch, counters)
            yield

    async def remove(self, name: str) -> None:
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            spec = repo.spec_of(row)
            await self._stop(self.engine(spec), spec)
            await repo.delete_server(session, row)
        self._forget_files(name)
        if spec.runtime == DOCKER:
            await asyncio.to_thread(self.docker(spec.docker_host).forget)

    async def rotate_keys(self, name: str) -> Server:
        """New REALITY keys and short ids: every user's link changes."""
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            engine = engine_for(row.protocol)
            before = repo.spec_of(row)
            settings, secret = engine.rotate_keys(before)
            await repo.set_server(session, row, self.now(), settings=settings, secret=secret)
            await self._reconfigure(session, row, before)
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
        from vpn_manager.storage import servers as repo

        change = validated(ServerChange, {"port": port, "sni": sni, "dest": dest, "host": host})
        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            before = repo.spec_of(row)
            settings = dict(row.settings)
            if change.sni is not None or change.dest is not None:
                if row.protocol != Protocol.VLESS_REALITY.value:
                    raise InvalidInput("--sni and --dest apply to vless-reality servers.")
                settings.update(
                    {k: v for k, v in (("sni", change.sni), ("dest", change.dest)) if v}
                )
            changes: dict[str, object] = {"settings": settings}
            if change.port is not None:
                changes["port"] = change.port
            if change.host is not None:
                changes["host"] = change.host
            await repo.set_server(session, row, self.now(), **changes)
            await self._reconfigure(session, row, before)
        return await self.get(name)

    async def _reconfigure(self, session: AsyncSession, row: ServerRow, before: ServerSpec) -> None:
        """After a settings change: a validated restart if the server should run, otherwise only
        the re-rendered config (it takes effect on the next start)."""
        from vpn_manager.storage import servers as repo

        spec = repo.spec_of(row)
        engine = self.engine(spec)
        clients = await repo.clients(session, row.id)
        if row.desired == DesiredState.RUNNING.value:
            await self._apply_restart(engine, spec, clients, before)
        else:
            self._write_config(engine, spec, clients)

    async def _set_desired(self, name: str, desired: DesiredState, *, restart: bool) -> None:
        from vpn_manager.storage import servers as repo

        async with self.db.session() as session:
            row = await repo.server_row(session, name)
            await repo.set_server(session, row, self.now(), desired=desired.value)
            spec = repo.spec_of(row)
            engine = self.engine(spec)
            clients = await repo.clients(session, row.id)
            if restart or not self.runtime_of(spec).state(name).running:
                await self._apply_restart(engine, spec, clients)

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
        atomic_write(files.config, text)
        try:
            await self._restart_and_probe(engine, spec)
            await engine.after_start(await self.reach(spec), clients)
        except EngineError as exc:
            if previous is None:
                await self._stop(engine, spec)
                files.config.unlink(missing_ok=True)
                raise
            atomic_write(files.config, previous)
            old = before or spec
            try:
                await self._restart_and_probe(engine, old)
                await engine.after_start(await self.reach(old), clients)
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

    async def _restart_and_probe(self, engine: Engine, spec: ServerSpec) -> None:
        await self._stop(engine, spec)
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
        control.parent.mkdir(exist_ok=True, mode=0o700)
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
        files = self.files(name)
        files.config.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            files.config.parent.rmdir()
        shutil.rmtree(self.keys_dir(name), ignore_errors=True)
        shutil.rmtree(self.control_dir(name), ignore_errors=True)
        spool.done(self.paths.run_dir, name)  # a last reading of a server that is gone

    # -- users on servers ----------------------------------------------------------------------
    async def grant(
        self, user_names: Sequence[str], server: str, password: str | None = None
    ) -> list[str]:
        """Give users credentials on a server; applied live when it runs. Returns who was new."""
        async with self.db.session() as session:
            return await self.grant_in(session, user_names, server, password)

    async def grant_in(
        self,
        session: AsyncSession,
        user_names: Sequence[str],
        server: str,
        password: str | None = None,
    ) -> list[str]:
        """grant() inside the caller's transaction (so `vpn user add --server` is all or none)."""
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        row = await repo.server_row(session, server)
        spec = repo.spec_of(row)
        engine = self.engine(spec)
        ids = await user_repo.ids_for(session, user_names)
        holders = await repo.holders(session, row.id, list(ids.values()))
        added = [name for name in user_names if ids[name] not in holders]
        everyone = await repo.clients_and_status(session, row.id)
        taken = [c.secret for c, _ in everyone]
        grants = []
        for name in added:
            credential = engine.new_credential(spec, password, taken)
            taken.append(credential)
            grants.append((ids[name], credential))
        await repo.add_credentials(session, row, grants, self.now())
        # The active ones among the new (read back: no one else's credentials twice).
        fresh = await repo.clients(session, row.id, user_ids=[user_id for user_id, _ in grants])
        clients = sorted([c for c, active in everyone if active] + fresh, key=lambda c: c.user_id)
        await self._apply_live(engine, repo.spec_of(row), row.desired, clients, fresh, [])
        return added

    async def access(self, user_name: str, server: str | None = None) -> list[Access]:
        """A user's ways in: for each server they hold credentials on (or the one named), the
        share link and what a client needs."""
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        async with self.db.session() as session:
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
                engine = engine_for(row.protocol)
                client = Client(user_id, user_name, dict(secret))
                out.append(
                    Access(
                        server=row.name,
                        protocol=row.protocol,
                        link=engine.link(repo.spec_of(row), client),
                        note=_trust_note(row.protocol, row.settings),
                    )
                )
            return out

    async def revoke(self, user_names: Sequence[str], server: str) -> None:
        from vpn_manager.storage import servers as repo
        from vpn_manager.storage import users as user_repo

        async with self.db.session() as session:
            row = await repo.server_row(session, server)
            engine = self.engine(repo.spec_of(row))
            ids = await user_repo.ids_for(session, user_names)
            before = await repo.clients(session, row.id)
            holders = await repo.holders(session, row.id, list(ids.values()))
            for name in user_names:
                if ids[name] not in holders:
                    raise NotFound(
                        f"User {name!r} is not on server {server!r}.",
                        hint=f"See `vpn user show {name}`.",
                    )
                await repo.remove_credential(session, ids[name], row.id)
            after = await repo.clients(session, row.id)
            await self._live(engine, repo.spec_of(row), row.desired, before, after)

    async def clients_before(
        self, session: AsyncSession, user_ids: Sequence[int]
    ) -> dict[int, list[Client]]:
        """Before a change to these users: each of their servers with its active clients."""
        from vpn_manager.storage import servers as repo

        server_ids = await repo.server_ids_of_users(session, user_ids)
        return {sid: await repo.clients(session, sid) for sid in server_ids}

    async def resync(self, session: AsyncSession, before: dict[int, list[Client]]) -> None:
        """After users changed (status, deletion): bring each affected server in line, live."""
        from vpn_manager.storage import servers as repo

        for row in await repo.servers_by_id(session, list(before)):
            after = await repo.clients(session, row.id)
            spec = repo.spec_of(row)
            await self._live(self.engine(spec), spec, row.desired, before[row.id], after)

    async def _live(
        self,
        engine: Engine,
        spec: ServerSpec,
        desired: str,
        before: list[Client],
        after: list[Client],
    ) -> None:
        """Write the new user set into the config and apply the difference to the running engine.
        On failure the previous config file is put back and the error propagates (the caller's
        database transaction then rolls back too)."""
        old = {c.email for c in before}
        new = {c.email for c in after}
        added = [c for c in after if c.email not in old]
        removed = [c for c in before if c.email not in new]
        await self._apply_live(engine, spec, desired, after, added, removed)

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
        running = (
            desired == DesiredState.RUNNING.value and self.runtime_of(spec).state(spec.name).running
        )
        if not (added or removed):
            self._write_config(engine, spec, clients)
            return
        if not running:
            self._write_config(engine, spec, clients)
            self.applied.append(Applied(spec.name, "saved"))
            return
        if engine.live_users(spec) and self._cuts_sessions(engine, spec, removed):
            self._write_config(engine, spec, clients)
            try:
                await containers.copy_in(self, spec)  # a remote container's copy of the file
                reached = await self.reach(spec)
                if added:
                    await engine.add_clients(reached, added)
                if removed:
                    await engine.remove_clients(reached, removed, files)
            except BaseException:
                if previous is not None:
                    atomic_write(files.config, previous)
                    with contextlib.suppress(VpnError):
                        await containers.copy_in(self, spec)
                raise
            self.applied.append(Applied(spec.name, "live"))
            return
        if spec.runtime == DOCKER:
            # No SIGHUP into a container from here: a new container from the new config, with
            # the same validate → probe → roll back as any restart.
            await self._apply_restart(engine, spec, clients)
            self.applied.append(Applied(spec.name, "recreated"))
            return
        await self._reload(engine, spec, clients, previous)
        self.applied.append(Applied(spec.name, "reloaded"))

    def _cuts_sessions(self, engine: Engine, spec: ServerSpec, removed: list[Client]) -> bool:
        """Can removing these users cut their open connections without a restart? Natively
        yes (the engine's API or `ss -K`); in a container only through the engine's API, since
        `ss -K` on the host does not reach the container's network namespace."""
        if spec.runtime != DOCKER or not removed:
            return True
        from vpn_manager.runtimes.images import image_facts

        return image_facts(engine.name).cuts_sessions

    async def _reload(
        self, engine: Engine, spec: ServerSpec, clients: list[Client], previous: str | None
    ) -> None:
        """render → validate → atomic write → reload → probe; on failure the previous config is
        written back and reloaded."""
        files = self.files(spec.name)
        text = self._render(engine, spec, clients)
        await engine.validate(text, files.config.parent)
        atomic_write(files.config, text)
        try:
            await self._signal_reload(engine, spec)
        except EngineError as exc:
            if previous is not None:
                atomic_write(files.config, previous)
                await self._signal_reload(engine, spec)
            raise EngineError(f"{exc.message} The change was rolled back.", hint=exc.hint) from None

    async def _signal_reload(self, engine: Engine, spec: ServerSpec) -> None:
        state = self.runtime.state(spec.name)
        if not state.running or state.pid is None:
            raise EngineError(f"{spec.name} stopped running.", hint=f"vpn server start {spec.name}")
        async with self._last_reading(engine, spec):
            await engine.reload(spec, state.pid)
        await self._wait_healthy(engine, spec)
