"""Running servers: start, stop and restart them, and read what they do now (status, usage,
logs) and who can reach their control APIs (the firewall guard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines import guard
from vpn_manager.engines.base import Engine
from vpn_manager.engines.registry import engine_name
from vpn_manager.errors import EngineError, VpnError
from vpn_manager.kinds import DesiredState, RuntimeKind
from vpn_manager.runtimes.base import ProcessState
from vpn_manager.services.locks import no_interrupt
from vpn_manager.services.servers.apply import Apply
from vpn_manager.services.servers.context import (
    ServerContext,
    count_users,
    engine_identity,
    owners,
)
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerStatus
    from vpn_manager.storage.orm import ServerRow

# How far back `read_logs` looks for lines of clients when the last ones are our own (an Xray
# access log is mostly API calls of the service's polls): at most this many times `lines`.
OWN_LINES_READ = 64


class Lifecycle:
    """Starts, stops and restarts servers, and reads their status, usage and logs."""

    def __init__(self, ctx: ServerContext, apply: Apply) -> None:
        self.ctx = ctx
        self.apply = apply

    async def status(self, name: str) -> ServerStatus:
        from vpn_manager.models.server import ContainerInfo, ServerStatus

        async with self.ctx.db.reading() as session:
            row = await storage.servers.server_row(session, name)
            spec = storage.servers.spec_of(row)
            desired = DesiredState(row.desired)
            clients = await storage.servers.clients(session, row.id)
        runtime = self.ctx.runtime_of(spec)
        state = runtime.state(name)
        engine = self.ctx.engine(spec)
        health = None
        warnings: list[str] = []
        if state.running:
            reached = await self.ctx.reach(spec)
            health = await engine.probe(reached)
            if health.healthy:  # an engine that does not answer is not asked for its users
                warnings = await self._out_of_step(engine, spec, state, reached, clients)
            warnings += await self.control_warnings(spec)
        info = await asyncio.to_thread(runtime.stats, name)
        container = ContainerInfo.model_validate(info) if info else None
        return ServerStatus(
            name=name,
            engine=spec.engine,
            desired=desired,
            running=state.running,
            healthy=bool(health and health.healthy),
            pid=state.pid,
            port_open=bool(health and health.port_open),
            api_ok=bool(health and health.api_ok),
            detail=health.detail if health else "not running",
            rss_bytes=state.rss_bytes,
            started_at=state.started_at,
            config_file=str(self.ctx.files(name).config),
            log_file=str(self.ctx.runtime.log_file(name)),
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
        remade = self.ctx.runtime_of(spec).remade_because(
            engine, spec, self.ctx.where(spec.name), state
        )
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
                    found.append(
                        f"Its engine lacks {count_users(missing)} of the database's: {fix}."
                    )
                if extra := len(have - want):
                    found.append(
                        f"Its engine has {count_users(extra)} the database has not: {fix}."
                    )
        return found

    async def usage(self, name: str) -> dict[str, tuple[int, int]]:
        """Per-user (upload, download) bytes as the running engine counts them now (since its
        start). Keys are user names; counters of users no longer known are left out."""
        async with self.ctx.db.reading() as session:
            row = await storage.servers.server_row(session, name)
            spec = storage.servers.spec_of(row)
            clients = await storage.servers.identities(session, row.id)
        if not self.ctx.runtime_of(spec).state(name).running:
            raise EngineError(f"{name} is not running.", hint=f"vpn server start {name}")
        counters = await self.ctx.engine(spec).counters(await self.ctx.reach(spec))
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
        spec = await self.ctx.spec(name)
        files = self.ctx.files(name)
        also = [files.error_log, files.access_log]
        own = self.ctx.engine_for(engine_name(spec), None).own_log_line
        wanted = lines
        while True:  # our own lines left out, read further back until `lines` remain
            found = await asyncio.to_thread(self.ctx.runtime_of(spec).logs, name, wanted, also)
            kept = [line for line in found if not own(line)]
            if len(kept) >= lines or len(found) < wanted or wanted >= OWN_LINES_READ * lines:
                return kept[-lines:] if lines else kept
            wanted *= 4

    def logs(self, name: str, lines: int = 100) -> list[str]:
        """The end of a native server's logs: the engine's output and its log files (for a
        Docker server only the output of its removed containers: use read_logs)."""
        files = self.ctx.files(name)
        return self.ctx.runtime.logs(name, lines, [files.error_log, files.access_log])

    async def follow(self, name: str, lines: int = 10) -> Iterator[str]:
        """The end of a server's logs, then new lines as they come (a blocking iterator)."""
        spec = await self.ctx.spec(name)
        files = self.ctx.files(name)
        found = self.ctx.runtime_of(spec).follow(name, lines, [files.error_log, files.access_log])
        own = self.ctx.engine_for(engine_name(spec), None).own_log_line
        return (line for line in found if not own(line))

    async def start(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=False)
        return await self.status(name)

    async def restart(self, name: str) -> ServerStatus:
        await self._set_desired(name, DesiredState.RUNNING, restart=True)
        return await self.status(name)

    async def stop(self, name: str) -> bool:
        async with self.ctx.turn(name):
            stopped, _ = await self.stop_in_turn(name)
        return stopped

    async def stop_in_turn(self, name: str) -> tuple[bool, ServerSpec]:
        """stop() with the server's turn already held: meant to be stopped (committed), then its
        engine stopped. Returns whether the engine was running, and the server."""
        async with self.ctx.db.session() as session:
            row = await storage.servers.server_row(session, name)
            await storage.servers.set_server(
                session, row, self.ctx.now(), desired=DesiredState.STOPPED.value
            )
            spec = storage.servers.spec_of(row)
        return await self.apply.stop(self.ctx.engine(spec), spec), spec

    async def _set_desired(self, name: str, desired: DesiredState, *, restart: bool) -> None:
        async with self.ctx.turn(name):
            async with self.ctx.db.session() as session:
                row = await storage.servers.server_row(session, name)
                was = row.desired
                await storage.servers.set_server(
                    session, row, self.ctx.now(), desired=desired.value
                )
                spec = storage.servers.spec_of(row)
                clients = await storage.servers.clients(session, row.id)
            if not (restart or not self.ctx.runtime_of(spec).state(name).running):
                return
            try:
                await self.apply.restart(self.ctx.engine(spec), spec, clients)
            except BaseException:
                with no_interrupt():
                    async with self.ctx.db.session() as session:
                        row = await storage.servers.server_row(session, name)
                        await storage.servers.set_server(session, row, self.ctx.now(), desired=was)
                raise

    async def guard_running(self, rows: Sequence[ServerRow]) -> list[str]:
        """For servers running now: make their firewall tables again where they are missing (a
        reboot brought a container back before us, the ruleset was flushed). Returns the names
        of the servers whose table was made; one nft call when none is missing, none when no
        server has TCP control ports."""
        home = str(self.ctx.paths.data_dir)
        wanted = {}
        for row in rows:
            spec = storage.servers.spec_of(row)
            if not self.ctx.on_remote_engine(spec):  # tunnel ends: guarded when reached
                ports = self.ctx.engine(spec).control_ports(self.ctx.placed(spec)[0])
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
        """What a person must know right after installing a server: its engine's advice on
        what makes it easier to block, and control_warnings()."""
        spec = await self.ctx.spec(name)
        return self.ctx.engine(spec).advice(spec) + await self.control_warnings(spec)

    async def advice(self, name: str) -> list[str]:
        """The engine's advice on how the server is set up (a REALITY target everyone uses, a
        port no real site uses), each with the command that fixes it."""
        spec = await self.ctx.spec(name)
        return self.ctx.engine(spec).advice(spec)

    async def control_warnings(self, spec: ServerSpec) -> list[str]:
        """What a person must know about who can reach the server's control APIs: nothing when
        they are on a private unix socket or kept to us by the firewall."""
        ports = self.ctx.engine(spec).control_ports(self.ctx.placed(spec)[0])
        if self.ctx.on_remote_engine(spec):
            return [guard.remote(ports)] if ports else []
        found = await guard.warning(str(self.ctx.paths.data_dir), spec.name, ports)
        return [found] if found else []
