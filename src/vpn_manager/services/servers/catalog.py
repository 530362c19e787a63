"""The servers a home has: install them (keys, row, first start), list and read them, change
their settings or keys (a validated restart, rolled back on failure), remove them, and write the
docker-compose.yml that runs its Docker servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines import tls
from vpn_manager.engines.ports import free_port
from vpn_manager.engines.registry import control_ports_of, engine_name, engine_of_new
from vpn_manager.errors import Conflict, EngineError, InvalidInput, NotFound, VpnError
from vpn_manager.kinds import UDP_PROTOCOLS, DesiredState
from vpn_manager.services import subnets
from vpn_manager.services.locks import interrupt_after, no_interrupt
from vpn_manager.services.servers.apply import Apply
from vpn_manager.services.servers.context import ServerContext
from vpn_manager.services.servers.convergence import Convergence
from vpn_manager.services.servers.lifecycle import Lifecycle
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.models.server import Server, ServerChange, ServerChanged, ServerCreate
    from vpn_manager.storage.orm import ServerRow


@dataclass(frozen=True)
class Changes:
    """A change to a server's row (`values`: its columns), and whether every user's credentials
    on it are made again (the engine said the old ones do not fit: Engine.change)."""

    values: dict[str, object]
    remake: bool = False


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


class Catalog:
    """Installs, lists, changes and removes servers."""

    def __init__(
        self, ctx: ServerContext, apply: Apply, lifecycle: Lifecycle, convergence: Convergence
    ) -> None:
        self.ctx = ctx
        self.apply = apply
        self.lifecycle = lifecycle
        self.convergence = convergence

    async def all(self) -> list[Server]:
        async with self.ctx.db.reading() as session:
            rows = await storage.servers.list_servers(session)
        return [self._observed(row, storage.servers.read_model(row, n)) for row, n in rows]

    def _observed(self, row: ServerRow, server: Server) -> Server:
        """The read model with whether its engine runs (not, if its Docker engine is unreachable:
        reconcile() says so)."""
        return server.model_copy(update={"running": self.ctx.is_running(row)})

    async def get(self, name: str) -> Server:
        async with self.ctx.db.reading() as session:
            row = await storage.servers.server_row(session, name)
            counts = {r.id: n for r, n in await storage.servers.list_servers(session)}
            return self._observed(row, storage.servers.read_model(row, counts.get(row.id, 0)))

    async def export_compose(self) -> str:
        """A docker-compose.yml that runs this home's Docker servers as the runtime does: same
        images, commands, labels, ports, read-only mounts, health checks and network."""
        async with self.ctx.db.reading() as session:
            specs = [
                storage.servers.spec_of(row)
                for row, _ in await storage.servers.list_servers(session)
            ]
        return self.ctx.runtimes.export_compose(
            specs, lambda s: self.ctx.engine_for(engine_name(s), None), self.ctx.where
        )

    async def install(self, create: ServerCreate) -> Server:
        """Make the server's keys, commit its row, then start it (validated, probed). If the start
        fails or is interrupted, the engine is stopped and the row and files are removed again;
        if this process dies after the commit, the service starts the server on its next round."""
        engine = self.ctx.engine_for(engine_of_new(create.protocol, create.runtime.value), None)
        async with self.ctx.turn(create.name):
            async with self.ctx.db.reading() as session:
                if await storage.servers.name_taken(session, create.name):
                    raise Conflict(
                        f"A server named {create.name!r} already exists.",
                        hint="Pick another --name.",
                    )
                taken = await storage.servers.ports_in_use(session, control_ports_of)
                await subnets.refuse_overlap(session, create)
            if create.port in taken:
                raise Conflict(
                    f"Port {create.port} is already used by server {taken[create.port]}."
                )
            runtime = self.ctx.runtimes.of(create.runtime, create.docker_host)
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
                keys_dir = self.ctx.keys_dir(create.name)
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
                async with self.ctx.db.session() as session:
                    if await storage.servers.name_taken(session, create.name):
                        raise Conflict(f"A server named {create.name!r} was just made elsewhere.")
                    inserted = storage.servers.spec_of(
                        await storage.servers.insert_server(session, values, self.ctx.now())
                    )
                await self.apply.restart(self.ctx.engine(inserted), inserted, [])
            except BaseException:
                with no_interrupt():
                    await self._undo_install(create.name, inserted)
                raise
        return await self.get(create.name)

    async def _undo_install(self, name: str, inserted: ServerSpec | None) -> None:
        """After a failed or interrupted install: no engine, no row, no files are left."""
        if inserted is not None:
            with contextlib.suppress(VpnError):
                await self.apply.stop(self.ctx.engine(inserted), inserted)
            async with self.ctx.db.session() as session:
                with contextlib.suppress(NotFound):
                    await storage.servers.delete_server(
                        session, await storage.servers.server_row(session, name)
                    )
        self.ctx.forget_files(name)
        if inserted is not None:
            with contextlib.suppress(VpnError):  # the network, if it was made for this server only
                await asyncio.to_thread(self.ctx.runtime_of(inserted).forget)

    async def remove(self, name: str, keep_logs: bool = False) -> None:
        """Stopped first (and that committed), then the row and the files (its logs too, unless
        `keep_logs`): a remove killed half-way leaves a stopped server that `vpn server remove`
        finishes, never one that the service would start again."""
        async with self.ctx.turn(name):
            _, spec = await self.lifecycle.stop_in_turn(name)
            async with self.ctx.db.session() as session:
                await storage.servers.delete_server(
                    session, await storage.servers.server_row(session, name)
                )
            self.ctx.forget_files(name)
            if not keep_logs:
                self.ctx.forget_logs(name)
        await asyncio.to_thread(self.ctx.runtime_of(spec).forget)

    async def rotate_keys(self, name: str) -> ServerChanged:
        """New keys (REALITY keys and short ids, a Shadowsocks 2022 server key, a WireGuard key
        pair, a self-signed certificate): every user's link changes."""

        def change(before: ServerSpec) -> Changes:
            settings, secret = self.ctx.engine_for(engine_name(before), None).rotate_keys(before)
            return Changes({"settings": settings, "secret": secret})

        return await self._reconfigure(name, change)

    async def check_update(self, name: str, update: ServerChange) -> None:
        """Refuse what `update` would refuse for this server (a port another server holds, an
        option its protocol or transport does not have, a value its engine turns down), so that
        a front end refuses before it asks whether every user's link may change. Nothing is
        written: what the engine would make (a certificate) goes to a scratch directory."""
        await self._check_port(name, update)
        async with self.ctx.db.reading() as session:
            before = storage.servers.spec_of(await storage.servers.server_row(session, name))
        engine = self.ctx.engine_for(engine_name(before), None)
        with tempfile.TemporaryDirectory(prefix="vpn-check-") as scratch:
            await asyncio.to_thread(engine.change, before, update, Path(scratch))

    async def _check_port(self, name: str, update: ServerChange) -> None:
        if update.port is not None:
            async with self.ctx.db.reading() as session:
                taken = await storage.servers.ports_in_use(session, control_ports_of)
            if taken.get(update.port, name) != name:
                raise Conflict(
                    f"Port {update.port} is already used by server {taken[update.port]}.",
                    hint="Pick another --port.",
                )

    async def update(self, name: str, update: ServerChange) -> ServerChanged:
        """Change a server's settings: validated, applied with a restart, rolled back on
        failure. A port another of our servers holds is refused before anything is written."""
        await self._check_port(name, update)

        def change(before: ServerSpec) -> Changes:
            engine = self.ctx.engine_for(engine_name(before), None)
            changed = engine.change(before, update, self.ctx.keys_dir(name))
            values: dict[str, object] = {"settings": changed.settings, "secret": changed.secret}
            if update.port is not None:
                values["port"] = update.port
            if update.host is not None:
                values["host"] = update.host
            return Changes(values, remake=changed.remake)

        return await self._reconfigure(name, change)

    async def _reconfigure(
        self, name: str, change: Callable[[ServerSpec], Changes]
    ) -> ServerChanged:
        """A settings change: committed (with users' new credentials, where the old ones do not
        fit the new settings), then a validated restart if the server should run (otherwise only
        the re-rendered config, for its next start). If the restart fails the engine is back on
        its last good config and the rows are put back; if this process dies half-way, the
        service's next round restarts the engine on what the database says. Returns the server
        and the users whose links changed (their link data before and after differ)."""
        from vpn_manager.models.server import ServerChanged

        async with self.ctx.turn(name):
            with contextlib.ExitStack() as commit:
                async with self.ctx.db.session() as session:
                    row = await storage.servers.server_row(session, name)
                    before = storage.servers.spec_of(row)

                    def unmade(kind: type[BaseException] | None, *_: object) -> None:
                        if kind is not None:  # refused or interrupted: what it made goes
                            tls.forget_unused_certificates(self.ctx.keys_dir(name), before.settings)

                    commit.push(unmade)
                    held = await storage.servers.clients_and_status(session, row.id)
                    changes = change(before)
                    await storage.servers.set_server(session, row, self.ctx.now(), **changes.values)
                    spec = storage.servers.spec_of(row)
                    engine = self.ctx.engine(spec)
                    was = [client for client, _ in held]
                    now = was
                    if changes.remake:
                        now = [Client(c.user_id, c.name, engine.new_credential(spec)) for c in was]
                        await storage.servers.set_credentials(
                            session, row.id, [(c.user_id, c.secret) for c in now]
                        )
                    desired = row.desired
                    commit.enter_context(interrupt_after())  # Ctrl-C: after the commit
            active = {client.user_id for client, ok in held if ok}
            clients = [c for c in now if c.user_id in active]
            try:
                if desired == DesiredState.RUNNING.value:
                    clients_before = [c for c in was if c.user_id in active]
                    await self.apply.restart(engine, spec, clients, before, clients_before)
                else:
                    self.apply.write_config(engine, spec, clients)
            except BaseException as exc:
                with no_interrupt():
                    await self._put_back(before, was if changes.remake else [])
                    tls.forget_unused_certificates(self.ctx.keys_dir(name), before.settings)
                    # Interrupted (not refused): the engine was not rolled back.
                    if not isinstance(exc, EngineError):
                        await self.convergence.converge_in_turn(name)
                        if desired == DesiredState.RUNNING.value:
                            await self._running_again(before, [c for c, ok in held if ok])
                raise
            # The certificate the change replaced (kept until it held).
            tls.forget_unused_certificates(self.ctx.keys_dir(name), spec.settings)
        changed = [
            after.name
            for old, after in zip(was, now, strict=True)
            if engine.link_data(before, old) != engine.link_data(spec, after)
        ]
        return ServerChanged(server=await self.get(name), links_changed=changed)

    async def _running_again(self, spec: ServerSpec, clients: list[Client]) -> None:
        """A change interrupted between the stop and the start of its restart left the engine
        down, which converge leaves to the service's next round (with a backoff): start it
        now, so that Ctrl-C does not take a server down. Failing, the service retries."""
        if self.ctx.runtime_of(spec).state(spec.name).running:
            return
        with contextlib.suppress(VpnError):
            await self.apply.restart(self.ctx.engine(spec), spec, clients)

    async def _put_back(self, before: ServerSpec, credentials: list[Client]) -> None:
        """A server's row as it was before a change that did not hold, and these users'
        credentials on it (those the change made again)."""
        async with self.ctx.db.session() as session:
            row = await storage.servers.server_row(session, before.name)
            old = {"port": before.port, "host": before.host}
            old |= {"settings": before.settings, "secret": before.secret}
            await storage.servers.set_server(session, row, self.ctx.now(), **old)
            if credentials:
                await storage.servers.set_credentials(
                    session, row.id, [(c.user_id, c.secret) for c in credentials]
                )
