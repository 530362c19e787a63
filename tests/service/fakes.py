"""Test doubles for the service tests of the apply transaction: an engine and a runtime that keep
the real contracts (engines/base.py's Engine, runtimes/base.py's Runtime) with their behaviour in
memory and in files under the test's home, so that ServerService runs its whole transaction
(render → validate → write → restart → probe → roll back; live user changes) without an engine
binary, Docker or root.

- FakeRuntime runs "processes": records with a pid and a start time (so an epoch) that read the
  rendered config file when they start, as an engine does, and keep what they read.
- FakeEngine renders a JSON config, refuses one that holds REFUSED (as `xray run -test` would),
  probes as healthy only a process that listens where it is asked and whose port is not in
  `sick_ports`, and adds and removes users on the running process (failing when `live_fails`).

Never used by the product: ServerService gets them through its `engines` and `runtimes`
parameters, whose defaults are the real registry and runtimes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.engines.base import (
    Changed,
    Counter,
    Files,
    Follower,
    Health,
    Session,
    Transport,
)
from vpn_manager.engines.changes import refuse_others
from vpn_manager.engines.linkdata import Credential, LinkData
from vpn_manager.errors import EngineError
from vpn_manager.runtimes.base import Launch, ProcessState, Runtime, ServerFiles
from vpn_manager.runtimes.choice import Runtimes
from vpn_manager.runtimes.native import NativeRuntime
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine
    from vpn_manager.models.server import ServerChange, ServerCreate
    from vpn_manager.proc import Commands
    from vpn_manager.runtimes.base import DockerDefaults
    from vpn_manager.settings import Paths

REFUSED = "refused.example"  # a config naming this host is refused by FakeEngine.validate
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class FakeProcess:
    """One start of an engine: what it read from its config file when it started, and the users
    added and removed on it since."""

    pid: int
    started_at: datetime
    config: Path
    loaded: dict[str, Any]
    users: set[str]
    alive: bool = True
    exit_code: int | None = None
    reloads: int = 0
    connected: set[str] = field(default_factory=set)  # users with a connection open

    @property
    def port(self) -> int:
        port: int = self.loaded["port"]
        return port

    def read_config(self) -> None:
        self.loaded = json.loads(self.config.read_text())
        self.users = set(self.loaded["users"])


class FakeRuntime:
    """A Runtime whose engine processes are FakeProcess records, one per server."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.processes: dict[str, FakeProcess] = {}
        self.history: list[FakeProcess] = []  # every start, in order
        self.in_place = True  # reloads_in_place(): a signal (native) or a new instance (Docker)
        self.exit_on_start: int | None = None  # the next start dies at once with this code
        self._pids = itertools.count(1000)
        self._clock = itertools.count(1)

    def process(self, server: str) -> FakeProcess:
        """The server's running process (a test failure if there is none)."""
        found = self.processes.get(server)
        assert found is not None, f"{server} has never started"
        assert found.alive, f"{server} has no running process"
        return found

    # -- placing and launching -----------------------------------------------------------------
    def is_remote(self) -> bool:
        return False

    def placement(self, engine: str, image: str | None) -> dict[str, str | None]:
        return {"image": None, "docker_host": None}

    def address(self) -> str | None:
        return None

    def commands(self, server: str) -> Commands | None:
        return None

    def placed(self, spec: ServerSpec, where: ServerFiles) -> tuple[ServerSpec, Files]:
        return spec, where.files

    def launch(self, engine: Engine, spec: ServerSpec, where: ServerFiles) -> Launch:
        argv = engine.argv(spec, where.files.config)
        return Launch(spec.name, argv, self.logs_dir / f"{spec.name}.log")

    async def put_files(self, server: str, where: ServerFiles) -> None:
        return None

    async def reach(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        return spec

    # -- running -------------------------------------------------------------------------------
    async def start(self, launch: Launch) -> int:
        running = self.processes.get(launch.server)
        if running is not None and running.alive:
            return running.pid
        started = T0 + timedelta(seconds=next(self._clock))
        process = FakeProcess(next(self._pids), started, Path(launch.argv[-1]), {}, set())
        process.read_config()
        if self.exit_on_start is not None:
            process.alive, process.exit_code = False, self.exit_on_start
            self.exit_on_start = None
        self.processes[launch.server] = process
        self.history.append(process)
        return process.pid

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        process = self.processes.get(server)
        if process is None or not process.alive:
            return False
        process.alive = False
        return True

    def state(self, server: str) -> ProcessState:
        process = self.processes.get(server)
        if process is None or not process.alive:
            return ProcessState(running=False)
        return ProcessState(running=True, pid=process.pid, started_at=process.started_at)

    def exited(self, server: str) -> int | None:
        process = self.processes.get(server)
        return process.exit_code if process is not None else None

    def logs(self, server: str, lines: int = 100, also: Sequence[Path] = ()) -> list[str]:
        return []

    def follow(self, server: str, lines: int = 10, also: Sequence[Path] = ()) -> Iterator[str]:
        return iter(())

    def stats(self, server: str) -> dict[str, Any] | None:
        return None

    # -- staying in line -----------------------------------------------------------------------
    def reloads_in_place(self) -> bool:
        return self.in_place

    def cuts_sessions(self, engine: str) -> bool:
        return True

    def epoch(self, server: str, state: ProcessState | None = None) -> str:
        state = state or self.state(server)
        return state.epoch if state.running else ""

    def remade_because(
        self, engine: Engine, spec: ServerSpec, where: ServerFiles, state: ProcessState
    ) -> str | None:
        return None

    def forget(self) -> None:
        return None


class FakeRuntimes(Runtimes):
    """The runtime chooser with every server on one FakeRuntime."""

    def __init__(self, fake: FakeRuntime, paths: Paths, docker: DockerDefaults) -> None:
        super().__init__(
            NativeRuntime(paths.run_dir, paths.logs_dir),
            str(paths.data_dir),
            paths.logs_dir,
            paths.run_dir,
            docker,
        )
        self.fake = fake

    def of(self, kind: str, docker_host: str | None = None) -> Runtime:
        return self.fake


@dataclass
class FakeEngine:
    """An Engine over FakeRuntime's processes. Users change live unless `live` is off (then a
    reload makes the process read its config again)."""

    runtime: FakeRuntime
    name: str = "fake"
    live: bool = True
    live_fails: bool = False  # add_clients/remove_clients raise EngineError
    cut_fails: bool = False  # cut_clients raises EngineError (the users are removed already)
    cuts: bool = True  # removed users' open connections can be cut live (else: a restart)
    sick_ports: set[int] = field(default_factory=set)  # probe() never healthy on these
    validated: list[str] = field(default_factory=list)  # every config validate() was asked about
    _keys: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_server(
        self, create: ServerCreate, ports: Callable[[], int], keys_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"api_port": ports()}, {"key": f"key-{next(self._keys)}"}

    def rotate_keys(self, spec: ServerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(spec.settings), {"key": f"key-{next(self._keys)}"}

    def change(self, spec: ServerSpec, change: ServerChange, keys_dir: Path) -> Changed:
        refuse_others(change, spec.protocol, ())
        return Changed(dict(spec.settings), dict(spec.secret))

    def advice(self, spec: ServerSpec) -> list[str]:
        return []

    def new_credential(
        self, spec: ServerSpec, password: str | None = None, taken: Sequence[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        return {"token": password or f"token-{len(taken) + 1}"}

    async def users(self, spec: ServerSpec) -> set[str] | None:
        return set(self.runtime.process(spec.name).users)

    def control_ports(self, spec: ServerSpec) -> list[int]:
        return []

    def transports(self, spec: ServerSpec) -> tuple[Transport, ...]:
        return ("tcp",)

    def live_users(self, spec: ServerSpec) -> bool:
        return self.live

    def cuts_sessions(self, spec: ServerSpec) -> bool:
        return self.cuts

    async def reload(self, spec: ServerSpec, pid: int) -> None:
        process = self.runtime.process(spec.name)
        assert process.pid == pid
        process.read_config()
        process.reloads += 1

    def render(self, spec: ServerSpec, clients: list[Client], files: Files) -> str:
        config = {
            "server": spec.name,
            "listen": spec.listen,
            "port": spec.port,
            "host": spec.host,
            "settings": spec.settings,
            "key": spec.secret.get("key"),
            "users": sorted(c.email for c in clients),
            "log": str(files.error_log),
        }
        return json.dumps(config, indent=2) + "\n"

    def before_start(self, spec: ServerSpec, clients: list[Client], files: Files) -> None:
        return None

    def argv(self, spec: ServerSpec, config: Path) -> list[str]:
        return ["fake-engine", "run", "-c", str(config)]

    async def validate(self, text: str, scratch: Path) -> None:
        self.validated.append(text)
        json.loads(text)
        if REFUSED in text:
            raise EngineError(f"The engine refused the config: unknown host {REFUSED}.")

    def own_log_line(self, line: str) -> bool:
        return False

    async def probe(self, spec: ServerSpec) -> Health:
        process = self.runtime.processes.get(spec.name)
        if process is None or not process.alive:
            return Health(False, False, "not running")
        port_open = process.port == spec.port and spec.port not in self.sick_ports
        return Health(port_open, True, "" if port_open else f"port {spec.port} is closed")

    async def after_start(self, spec: ServerSpec, clients: list[Client]) -> None:
        return None

    async def after_stop(self, spec: ServerSpec) -> None:
        return None

    async def add_clients(self, spec: ServerSpec, clients: list[Client]) -> None:
        process = self.runtime.process(spec.name)
        if self.live_fails:
            raise EngineError(f"The engine's API refused to add users to {spec.name}.")
        process.users |= {c.email for c in clients}

    async def remove_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        process = self.runtime.process(spec.name)
        if self.live_fails:
            raise EngineError(f"The engine's API refused to remove users from {spec.name}.")
        process.users -= {c.email for c in clients}
        return await self.cut_clients(spec, clients, files)

    async def cut_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        process = self.runtime.process(spec.name)
        if self.cut_fails:
            raise EngineError(f"Could not cut the removed users' connections on {spec.name}.")
        cut = process.connected & {c.email for c in clients}
        process.connected -= cut
        return len(cut)

    async def counters(self, spec: ServerSpec) -> list[Counter]:
        return []

    def follower(self, spec: ServerSpec) -> Follower | None:
        return None

    async def sessions(self, spec: ServerSpec) -> list[Session] | None:
        return None

    async def cut_ips(self, spec: ServerSpec, user: str, ips: set[str], files: Files) -> int:
        return 0

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        return LinkData.of(
            "socks5",
            spec,
            client,
            credential=Credential(username=client.name, password=str(client.secret["token"])),
        )
