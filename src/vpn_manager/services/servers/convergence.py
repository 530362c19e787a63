"""Bringing a server's engine back in line with the database after whatever happened (a command
killed half-way, an engine that lost its users, a container restarted behind our back), and
clearing what no server owns: temp files, engine processes, files and containers of this home.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Sequence

from vpn_manager import storage
from vpn_manager.engines import tls
from vpn_manager.engines.base import Engine
from vpn_manager.errors import NotFound, VpnError
from vpn_manager.fsutil import atomic_write, remove_temps
from vpn_manager.kinds import DesiredState
from vpn_manager.paths import entry
from vpn_manager.runtimes.base import ProcessState
from vpn_manager.services import owed_cuts
from vpn_manager.services.locks import turn_taken
from vpn_manager.services.servers.apply import Apply
from vpn_manager.services.servers.context import (
    ServerContext,
    client_of,
    count_users,
    engine_identity,
)
from vpn_manager.specs import Client, ServerSpec


class Convergence:
    """Makes engines, rendered configs and the database agree, the database being right."""

    def __init__(self, ctx: ServerContext, apply: Apply) -> None:
        self.ctx = ctx
        self.apply = apply

    async def reconcile(self) -> list[str]:
        """Docker servers and containers out of step, one sentence each with the fix:
        containers labelled as this home's but owned by no server, servers whose container is
        gone, has stopped while they should run, is off its network or was made for another
        launch, and Docker engines that cannot be reached (runtimes/docker/census.py)."""
        async with self.ctx.db.reading() as session:
            rows = [row for row, _ in await storage.servers.list_servers(session)]
        specs = [storage.servers.spec_of(row) for row in rows]
        wanted = {row.name for row in rows if row.desired == DesiredState.RUNNING.value}

        def remade(spec: ServerSpec, state: ProcessState) -> str | None:
            runtime = self.ctx.runtime_of(spec)
            return runtime.remade_because(
                self.ctx.engine(spec), spec, self.ctx.where(spec.name), state
            )

        return await self.ctx.runtimes.out_of_step(specs, wanted, remade)

    async def converge(self, name: str) -> list[str]:
        """After whatever happened (a command killed half-way, an engine that lost its users):
        make the server's engine, its rendered config and the database agree, the database
        being right. Returns what it fixed, in words."""
        async with self.ctx.turn(name):
            return await self.converge_in_turn(name)

    async def converge_in_turn(self, name: str) -> list[str]:
        """converge() with the server's turn already held."""
        async with self.ctx.db.reading() as session:
            try:
                row = await storage.servers.server_row(session, name)
            except NotFound:
                return []
            clients = await storage.servers.clients(session, row.id)
        spec = storage.servers.spec_of(row)
        engine = self.ctx.engine(spec)
        fixed = self._sweep(name)
        if unused := tls.forget_unused_certificates(self.ctx.keys_dir(name), spec.settings):
            fixed.append(f"removed {unused} certificate files it no longer uses")
        state = self.ctx.runtime_of(spec).state(name)
        if row.desired != DesiredState.RUNNING.value or not state.running:
            if state.running:
                await self.apply.stop(engine, spec)
                fixed.append("stopped it: it is meant to be stopped")
            owed_cuts.forget(self.ctx.paths.run_dir, name)  # not running: nothing is left open
            if self._rewrite(engine, spec, clients):
                fixed.append("rewrote its config from the database")
            return fixed  # one that should run is started by the service, with a backoff
        basis = self.apply.basis(engine, spec, clients)
        if not self.apply.runs(spec, basis, state):
            await self.apply.restart(engine, spec, clients)
            return [*fixed, "restarted it: its engine ran another config than the database's"]
        runtime = self.ctx.runtime_of(spec)
        remade = runtime.remade_because(engine, spec, self.ctx.where(name), state)
        if remade is not None:
            await self.apply.restart(engine, spec, clients)
            return [*fixed, f"made its container again: {remade}"]
        recorded = self.apply.recorded(name)
        epoch = runtime.epoch(name, state)  # "" where nothing but us restarts the engine
        if epoch and recorded is not None and not recorded[1]:
            self.apply.record(spec, basis, state)  # recorded by an earlier version
        elif epoch and recorded is not None and recorded[1] != epoch:
            # Restarted behind our back (`docker restart`, its restart policy, a reboot): what
            # its start set up outside the config (live users, a WireGuard interface's address
            # and NAT) is gone. Set it up again; users are compared one by one below as well.
            await self.apply.wait_healthy(engine, spec)
            await engine.after_start(await self.ctx.reach(spec), clients)
            self.apply.record(spec, basis, state)
            fixed.append("set up again what its start sets up: its container was restarted")
        if self._rewrite(engine, spec, clients):
            await runtime.put_files(name, self.ctx.where(name))
            fixed.append("rewrote its config from the database")
        if engine.live_users(spec):
            fixed += await self._users_in_line(engine, await self.ctx.reach(spec), clients)
        return fixed + await self._cut_owed(engine, spec, clients)

    async def _users_in_line(
        self, engine: Engine, reached: ServerSpec, clients: list[Client]
    ) -> list[str]:
        """Give the running engine the users it lacks, take away those the database has not."""
        have = await engine.users(reached)
        if have is None:
            return []
        fixed = []
        want = {engine_identity(c): c for c in clients}
        missing = [c for identity, c in want.items() if identity not in have]
        extra = [client_of(identity) for identity in sorted(have) if identity not in want]
        if missing:
            await engine.add_clients(reached, missing)
            fixed.append(f"gave its engine {count_users(len(missing))} it did not have")
        if extra:
            await self.apply.remove(engine, reached, extra)
            fixed.append(
                f"removed {count_users(len(extra))} from its engine that the database has not"
            )
        return fixed

    async def _cut_owed(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> list[str]:
        """Cut the open connections of users taken off the running engine by a process killed
        before it cut them (owed_cuts.py); users the database gives the server again keep
        theirs. Call with the server's turn, after the engine's users are in line."""
        run_dir = self.ctx.paths.run_dir
        owed = owed_cuts.owed(run_dir, spec.name)
        if not owed:
            return []
        doomed = sorted(owed - {engine_identity(c) for c in clients})
        cut = 0
        if doomed:
            reached, files = await self.ctx.reach(spec), self.ctx.files(spec.name)
            cut = await engine.cut_clients(reached, [client_of(i) for i in doomed], files)
        owed_cuts.paid(run_dir, spec.name, owed)
        if not doomed:
            return []
        return [
            f"cut {cut} open connection{'' if cut == 1 else 's'} of {count_users(len(doomed))} "
            "whose removal was interrupted before the cut"
        ]

    def _rewrite(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> bool:
        """Write the config the database renders, if the file differs. Returns whether it did."""
        config = self.ctx.files(spec.name).config
        text = self.apply.render(engine, spec, clients)
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
        for folder in (self.ctx.files(name).config.parent, self.ctx.keys_dir(name)):
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                if item.name.startswith(".validate-") and item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                    swept += 1
                elif item.name.startswith(".") and item.name.endswith(".tmp"):
                    item.unlink(missing_ok=True)
                    swept += 1
        swept += remove_temps(self.ctx.applied_file(name))
        swept += owed_cuts.sweep(self.ctx.paths.run_dir, name)
        launcher_temp = entry(self.ctx.paths.run_dir, name, ".pid.tmp")  # runtimes/launch.py
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
        known = {spec.name for spec in specs}

        run_dir = self.ctx.paths.run_dir
        candidates = {p.name.removesuffix(".pid") for p in run_dir.glob("*.pid")}
        for parent in (self.ctx.paths.rendered_dir, self.ctx.paths.keys_dir):
            if parent.is_dir():
                candidates |= {p.name for p in parent.iterdir() if p.is_dir()}
        found = []
        for name in sorted(candidates - known):
            if turn_taken(run_dir, name):
                continue
            async with self.ctx.turn(name):
                async with self.ctx.db.reading() as session:
                    if await storage.servers.name_taken(session, name):
                        continue  # made since the list was read
                if (run_dir / f"{name}.pid").exists() and self.ctx.runtime.state(name).running:
                    with contextlib.suppress(VpnError):
                        await self.ctx.runtime.stop(name)
                        found.append(f"stopped an engine of this home that no server owns ({name})")
                (run_dir / f"{name}.pid").unlink(missing_ok=True)
                if (self.ctx.paths.rendered_dir / name).is_dir() or self.ctx.keys_dir(
                    name
                ).is_dir():
                    found.append(f"removed the files of a server that does not exist ({name})")
                self.ctx.forget_files(name)
        self.ctx.runtimes.tidy()
        if self.ctx.runtimes.ever_used() or self.ctx.runtimes.used(specs):
            found += await self._remove_strays(list(specs))
        return found

    async def _remove_strays(self, specs: list[ServerSpec]) -> list[str]:
        """Remove this home's containers that no server owns (a server's row lost, an install
        killed at the wrong moment), on every Docker engine the home has used; then forget an
        engine where nothing of this home is left (its network goes too). A server whose turn
        someone holds is being made or removed right now: its container is left alone."""
        seen, _ = await self.ctx.runtimes.census(specs)
        used = self.ctx.runtimes.used(specs)
        removed = []
        for place in seen:
            for server, container in sorted(place.strays.items()):
                if turn_taken(self.ctx.paths.run_dir, server):
                    continue
                async with self.ctx.turn(server):
                    async with self.ctx.db.reading() as session:
                        if await storage.servers.name_taken(session, server):
                            spec = storage.servers.spec_of(
                                await storage.servers.server_row(session, server)
                            )
                            if self.ctx.runtimes.key_of(spec) == place.key:
                                continue  # made since the census
                    await asyncio.to_thread(place.runtime.discard, container)
                del place.found[server]
                removed.append(
                    f"removed container {container} of this home that no server owns "
                    f"(on {place.shown})"
                )
            if not place.found and place.key not in used:
                await asyncio.to_thread(place.runtime.forget)
                self.ctx.runtimes.forget_engine(place.key)
        return removed
