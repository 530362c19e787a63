"""The one apply transaction: render a server's config from the database, validate it with the
real engine, write it atomically, put it in force (live through the engine's API, a reload, or a
restart), probe the engine, and on failure put the last good config back. Also the record of what
the running engine was last started or reloaded with (for convergence to compare), and stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from vpn_manager.engines import guard
from vpn_manager.engines.base import Engine, Health
from vpn_manager.errors import EngineError, VpnError
from vpn_manager.fsutil import atomic_write
from vpn_manager.kinds import DesiredState
from vpn_manager.runtimes.base import ProcessState
from vpn_manager.services import owed_cuts, pending_readings
from vpn_manager.services.servers.context import ServerContext, engine_identity
from vpn_manager.specs import Client, ServerSpec

HEALTH_DEADLINE = 10.0

log = logging.getLogger("vpn_manager.servers")


_EXIT_REASONS = {
    23: ": the engine refused the config.",
    255: ": the engine could not start, for example because its port is taken.",
}


@dataclass(frozen=True)
class Applied:
    """How a user change reached one server: "live" (through the engine's API), "reloaded" (the
    engine re-read its config; open connections were reset), "recreated" (a new container),
    "restarted" (users were removed from an engine that cannot cut their open connections),
    "started" (it was down while it should run: started on the change) or "saved" (stopped: it
    takes effect on the next start)."""

    server: str
    how: str


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Apply:
    """Puts a server's config in force on its engine, or puts the last good one back."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def basis(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        """What the running engine must have loaded for the database's view of it: the config
        without users where users change live (they are compared one by one), else all of it."""
        return self.render(engine, spec, [] if engine.live_users(spec) else clients)

    def record(self, spec: ServerSpec, basis: str, state: ProcessState | None = None) -> None:
        """Note what the engine was (re)started or reloaded with, for converge() to compare; for
        a container also which start of it that was (a container restarted behind our back, by
        hand or by Docker, has lost what its start set up outside the config)."""
        epoch = self.ctx.runtime_of(spec).epoch(spec.name, state)
        atomic_write(self.ctx.applied_file(spec.name), f"{digest(basis)}\n{epoch}\n")

    def recorded(self, name: str) -> tuple[str, str] | None:
        """The recorded (digest, epoch) of what the engine runs; None if nothing is recorded."""
        try:
            lines = self.ctx.applied_file(name).read_text().splitlines()
        except FileNotFoundError:
            return None
        return (lines[0].strip() if lines else "", lines[1].strip() if len(lines) > 1 else "")

    def runs(self, spec: ServerSpec, basis: str, state: ProcessState) -> bool:
        """Does the running engine have `basis` loaded? Known from what the last start or reload
        recorded; with no record (a start or reload cut short, or a server started by an
        earlier version), only if the engine started after its config was last written and
        that config is the basis."""
        recorded = self.recorded(spec.name)
        if recorded is not None:
            return recorded[0] == digest(basis)
        config = self.ctx.files(spec.name).config
        try:
            written = datetime.fromtimestamp(config.stat().st_mtime, UTC)
            text = config.read_text()
        except OSError:
            return False
        if state.started_at is None or state.started_at < written or text != basis:
            return False
        self.record(spec, basis, state)
        return True

    async def stop(self, engine: Engine, spec: ServerSpec) -> bool:
        """Stop the engine process, then undo what its start set up outside it (rules)."""
        async with self._last_reading(engine, spec):
            stopped = await self.ctx.runtime_of(spec).stop(spec.name)
        owed_cuts.forget(self.ctx.paths.run_dir, spec.name)  # no connection outlives its engine
        await engine.after_stop(spec)
        await guard.release(str(self.ctx.paths.data_dir), spec.name)
        return stopped

    @asynccontextmanager
    async def _last_reading(self, engine: Engine, spec: ServerSpec) -> AsyncIterator[None]:
        """Around a stop or reload (which resets the engine's counters): read them once more
        for the next poll to count (see pending_readings.py); a failed read only loses what it
        would have added since the last poll."""
        async with pending_readings.poll_lock(self.ctx.paths.run_dir):
            state = self.ctx.runtime_of(spec).state(spec.name)
            if state.running:
                try:
                    counters = await engine.counters(await self.ctx.reach(spec))
                except VpnError as exc:
                    log.warning("last reading of %s failed: %s", spec.name, exc.message)
                else:
                    pending_readings.keep(self.ctx.paths.run_dir, spec.name, state.epoch, counters)
            yield

    async def remove(self, engine: Engine, reached: ServerSpec, clients: list[Client]) -> int:
        """Take users off the running engine and cut their open connections; return how many
        were cut. From before the engine loses them until the cut is done, the cut is on record
        as owed (owed_cuts.py), so that one killed in between is still made (converge). Call
        with the server's turn."""
        run_dir, names = self.ctx.paths.run_dir, [engine_identity(c) for c in clients]
        owed_cuts.owe(run_dir, reached.name, names)
        cut = await engine.remove_clients(reached, clients, self.ctx.files(reached.name))
        owed_cuts.paid(run_dir, reached.name, names)
        return cut

    def render(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        placed, files = self.ctx.placed(spec)
        return engine.render(placed, clients, files)

    def write_config(self, engine: Engine, spec: ServerSpec, clients: list[Client]) -> str:
        files = self.ctx.files(spec.name)
        text = self.render(engine, spec, clients)
        atomic_write(files.config, text)
        return text

    async def restart(
        self,
        engine: Engine,
        spec: ServerSpec,
        clients: list[Client],
        before: ServerSpec | None = None,
        clients_before: list[Client] | None = None,
    ) -> None:
        """render → validate → atomic write → restart → probe; roll back on any failure.
        `before` is the server as it was (the database rolls back to it with the caller's
        transaction), so the rolled-back engine is probed where it really listens;
        `clients_before`, its users' credentials as they were, where the change made new ones."""
        files = self.ctx.files(spec.name)
        files.config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ctx.paths.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = self.render(engine, spec, clients)
        await engine.validate(text, files.config.parent)
        previous = files.config.read_text() if files.config.exists() else None
        self.ctx.forget_record(spec.name)  # until the engine runs the new file, nothing is known
        atomic_write(files.config, text)
        try:
            await self._restart_and_probe(engine, spec, clients)
            await engine.after_start(await self.ctx.reach(spec), clients)
            self.record(spec, self.basis(engine, spec, clients))
        except EngineError as exc:
            if previous is None:
                await self.stop(engine, spec)
                files.config.unlink(missing_ok=True)
                raise
            atomic_write(files.config, previous)
            old = before or spec
            old_clients = clients if clients_before is None else clients_before
            try:
                await self._restart_and_probe(engine, old, old_clients)
                await engine.after_start(await self.ctx.reach(old), old_clients)
                self.record(old, self.basis(engine, old, old_clients))
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
        await self.stop(engine, spec)
        engine.before_start(spec, clients, self.ctx.files(spec.name))
        self._fresh_control_dir(spec.name)
        if not self.ctx.on_remote_engine(spec):  # a remote engine's ports are out of our reach
            # Before the engine starts: its TCP control ports kept to our uid (engines/guard.py).
            ports = engine.control_ports(self.ctx.placed(spec)[0])
            warning = await guard.protect(str(self.ctx.paths.data_dir), spec.name, ports)
            if warning:
                log.warning("%s: %s", spec.name, warning)
        await self.ctx.runtime_of(spec).start(self.ctx.launch(engine, spec))
        await self.wait_healthy(engine, spec)

    def _fresh_control_dir(self, name: str) -> None:
        """The server's private control directory, 0700 and empty: an engine that was killed
        leaves its socket behind, and Xray will not listen where a socket file is."""
        control = self.ctx.control_dir(name)
        shutil.rmtree(control, ignore_errors=True)
        self.ctx.paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        control.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        control.mkdir(mode=0o700)
        control.chmod(0o700)  # whatever the umask

    async def wait_healthy(self, engine: Engine, spec: ServerSpec) -> Health:
        deadline = time.monotonic() + HEALTH_DEADLINE
        health = Health(False, False, "not probed")
        reached: ServerSpec | None = None
        while time.monotonic() < deadline:
            runtime = self.ctx.runtime_of(spec)
            code = runtime.exited(spec.name)
            if code is not None or not runtime.state(spec.name).running:
                raise EngineError(
                    f"The engine for {spec.name} exited"
                    + (f" with code {code}" if code is not None else "")
                    + _EXIT_REASONS.get(code or 0, "."),
                    hint=f"See `vpn server logs {spec.name}`.",
                )
            reached = reached or await self.ctx.reach(spec)
            health = await engine.probe(reached)
            if health.healthy:
                return health
            await asyncio.sleep(0.02)
        raise EngineError(
            f"{spec.name} did not become healthy within {HEALTH_DEADLINE:.0f} s: {health.detail}.",
            hint=f"See `vpn server logs {spec.name}`.",
        )

    async def live(
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
        files = self.ctx.files(spec.name)
        previous = files.config.read_text() if files.config.exists() else None
        should_run = desired == DesiredState.RUNNING.value
        running = should_run and self.ctx.runtime_of(spec).state(spec.name).running
        if not (added or removed):
            self.write_config(engine, spec, clients)
            return
        if should_run and not running:
            # Down while it should run (it crashed, or an earlier change was cut short): started
            # on the new users now, not left down behind a "saved" that reads as all is well.
            await self.restart(engine, spec, clients)
            self.ctx.applied.append(Applied(spec.name, "started"))
            return
        if not running:
            self.write_config(engine, spec, clients)
            self.ctx.applied.append(Applied(spec.name, "saved"))
            return
        runtime = self.ctx.runtime_of(spec)
        cuts = engine.cuts_sessions(spec) and runtime.cuts_sessions(engine.name)
        if engine.live_users(spec) and (not removed or cuts):
            self.write_config(engine, spec, clients)
            try:
                await runtime.put_files(spec.name, self.ctx.where(spec.name))
                reached = await self.ctx.reach(spec)
                if added:
                    await engine.add_clients(reached, added)
                if removed:
                    await self.remove(engine, reached, removed)
            except BaseException:
                if previous is not None:
                    atomic_write(files.config, previous)
                    with contextlib.suppress(VpnError):
                        await runtime.put_files(spec.name, self.ctx.where(spec.name))
                raise
            self.ctx.applied.append(Applied(spec.name, "live"))
            return
        if not runtime.reloads_in_place() or engine.live_users(spec):
            # Nothing to signal (a container), or an engine that changes users live but cannot
            # cut a removed user's open connections and has no reload (Xray's Hysteria2): started
            # again from the new config, with the same validate → probe → roll back as any
            # restart.
            await self.restart(engine, spec, clients)
            how = "restarted" if runtime.reloads_in_place() else "recreated"
            self.ctx.applied.append(Applied(spec.name, how))
            return
        await self._reload(engine, spec, clients, previous)
        self.ctx.applied.append(Applied(spec.name, "reloaded"))

    async def _reload(
        self, engine: Engine, spec: ServerSpec, clients: list[Client], previous: str | None
    ) -> None:
        """render → validate → atomic write → reload → probe; on failure the previous config is
        written back and reloaded."""
        files = self.ctx.files(spec.name)
        text = self.render(engine, spec, clients)
        await engine.validate(text, files.config.parent)
        self.ctx.forget_record(spec.name)
        atomic_write(files.config, text)
        try:
            await self._signal_reload(engine, spec)
            self.record(spec, text)  # reloads are for engines without live users
        except EngineError as exc:
            if previous is not None:
                atomic_write(files.config, previous)
                await self._signal_reload(engine, spec)
                self.record(spec, previous)
            raise EngineError(f"{exc.message} The change was rolled back.", hint=exc.hint) from None

    async def _signal_reload(self, engine: Engine, spec: ServerSpec) -> None:
        state = self.ctx.runtime_of(spec).state(spec.name)
        if not state.running or state.pid is None:
            raise EngineError(f"{spec.name} stopped running.", hint=f"vpn server start {spec.name}")
        async with self._last_reading(engine, spec):
            await engine.reload(spec, state.pid)
        await self.wait_healthy(engine, spec)
