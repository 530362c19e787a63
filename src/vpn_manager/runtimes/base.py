"""The runtime contract: where and how one server's engine runs (a native process of ours, a
Docker container), apart from what the engine is. The service asks its runtime to place the
server (how the engine sees it there), launch it, put its files there, reach its control APIs,
tell its state, logs and stats, stop it, and whether it is still what was launched; it never asks
which runtime it has."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine, Files
    from vpn_manager.proc import Commands
    from vpn_manager.settings import DockerSshSettings
    from vpn_manager.specs import ServerSpec

# Where a home notes the Docker engines it has made containers on (runtimes/docker/hosts.py), in
# its run directory: no such file (nor a temp file of one) means it never used Docker.
DOCKER_HOSTS_FILE = "docker-hosts.json"


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host: `host_ip:host_port` → `container_port/proto`.
    `control`: an engine's control API port (on a remote engine Docker picks its host port)."""

    host_ip: str
    host_port: int
    container_port: int
    proto: Literal["tcp", "udp"] = "tcp"
    control: bool = False

    @property
    def key(self) -> str:
        """The container port as Docker names it: "443/tcp"."""
        return f"{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class ContainerLaunch:
    """How to run an engine in a container: the image and the engine binary on the image's PATH
    (set as the entrypoint, so official images and our own scratch images run alike), its
    arguments, the ports to publish, the host directories mounted read-only at the same path
    (the rendered config and the server's certificates; copied in instead on a remote engine),
    and the health check's arguments to the same binary (None when the image offers no way to
    check; a scratch image has no shell), or to `health_binary` when another program of the image
    checks. `control_dir`: the server's private directory (0700) for unix-socket control APIs,
    mounted read-write at the same path (None on a remote engine). Engines that make network
    devices (WireGuard) also get capabilities (`cap_add`), host devices (`devices`, e.g.
    /dev/net/tun) and network sysctls of the container's own namespace (`sysctls`)."""

    image: str
    engine: str
    binary: str
    args: list[str]
    ports: list[PublishedPort]
    mounts: list[Path]
    control_dir: Path | None = None
    health: list[str] | None = None
    health_binary: str | None = None
    cap_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    @property
    def health_test(self) -> list[str] | None:
        """The health check as Docker runs it (CMD form: no shell needed in the image)."""
        if not self.health:
            return None
        return ["CMD", self.health_binary or self.binary, *self.health]


@dataclass(frozen=True)
class Launch:
    """What to run for a server: the engine's argv and where its log goes; for the Docker
    runtime also the container to run it in."""

    server: str
    argv: list[str]
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)
    container: ContainerLaunch | None = None


@dataclass(frozen=True)
class ProcessState:
    running: bool
    pid: int | None = None
    started_at: datetime | None = None
    rss_bytes: int | None = None
    exit_detail: str = ""
    health: str | None = None  # the container's health check ("healthy", …); None natively
    instance: str = ""  # the container's id (Docker)
    restarts: int = 0  # how often Docker restarted that container by its restart policy
    # Docker: the digest of the launch the container was made for (its label; "" if it has
    # none), whether it is on this home's network with an endpoint there, and the host port
    # each of its ports is published on ("443/tcp" → 443).
    launch: str = ""
    networked: bool = True
    bindings: dict[str, int] = field(default_factory=dict)

    @property
    def epoch(self) -> str:
        """Names this engine process: its counters only grow while it lives."""
        return f"{self.pid}@{self.started_at.timestamp() if self.started_at else 0:.0f}"


@dataclass(frozen=True)
class ServerFiles:
    """Where one server's files are on this machine: its rendered config and log files, its keys
    directory, and its private control directory (0700, for unix-socket control APIs), found only
    when asked (a home deep in the file system gets one on a short path, made then)."""

    files: Files
    keys_dir: Path
    control: Callable[[], Path]


class Runtime(Protocol):
    """Where engines run. Implementations: runtimes.native.NativeRuntime and
    runtimes.docker.runtime.DockerRuntime (one per Docker engine). Chosen for a server by
    runtimes.choice.Runtimes.runtime_of, the one place that knows which is which."""

    # -- placing and launching -----------------------------------------------------------------
    def is_remote(self) -> bool:
        """Whether the engine runs on another machine (decided from the address alone)."""
        ...

    def placement(self, engine: str, image: str | None) -> dict[str, str | None]:
        """A new server's `image` and `docker_host` columns (None natively); reaches the runtime
        now, so that a bad place fails before anything is made, and remembers it."""
        ...

    def address(self) -> str | None:
        """The other machine's address, where clients connect (None on this machine)."""
        ...

    def commands(self, server: str) -> Commands | None:
        """Where the engine's helper commands run (None: on this machine)."""
        ...

    def placed(self, spec: ServerSpec, where: ServerFiles) -> tuple[ServerSpec, Files]:
        """The server and its files as the engine sees them where it runs (what is rendered)."""
        ...

    def launch(self, engine: Engine, spec: ServerSpec, where: ServerFiles) -> Launch:
        """What start() runs for the server."""
        ...

    async def put_files(self, server: str, where: ServerFiles) -> None:
        """After the rendered files changed without a new start: put them where the running
        engine reads them again (a remote container's copy); nothing where it reads ours."""
        ...

    async def reach(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        """The server as this machine reaches its control APIs and its port."""
        ...

    # -- running -------------------------------------------------------------------------------
    async def start(self, launch: Launch) -> int:
        """Start the server's engine unless it runs already; return its pid. Never two."""
        ...

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        """Stop the engine; True if one was running."""
        ...

    def state(self, server: str) -> ProcessState: ...

    def exited(self, server: str) -> int | None:
        """The exit code of an engine that has ended (natively: one this process started)."""
        ...

    def logs(self, server: str, lines: int = 100, also: Sequence[Path] = ()) -> list[str]:
        """The end of the engine's output; `also`: the log files the engine writes itself,
        read where it writes them (a container logs to its output instead)."""
        ...

    def follow(self, server: str, lines: int = 10, also: Sequence[Path] = ()) -> Iterator[str]:
        """The last `lines` log lines, then new ones as they come (until the caller stops)."""
        ...

    def stats(self, server: str) -> dict[str, Any] | None:
        """The container's summary and resource use (models.server.ContainerInfo); None
        natively or without a container. Blocks for a second sample."""
        ...

    # -- staying in line -----------------------------------------------------------------------
    def reloads_in_place(self) -> bool:
        """Whether a config change can be applied by signalling the running engine (else it
        is started again from the new config)."""
        ...

    def cuts_sessions(self, engine: str) -> bool:
        """Whether removed users' open connections can be cut without a restart."""
        ...

    def epoch(self, server: str, state: ProcessState | None = None) -> str:
        """Which start of the engine runs now, recorded with what it was started with, so that a
        restart behind our back (by Docker's restart policy, by hand) is seen; "" where nothing
        but us restarts it."""
        ...

    def remade_because(
        self, engine: Engine, spec: ServerSpec, where: ServerFiles, state: ProcessState
    ) -> str | None:
        """Why the running engine's instance must be made again (not what launch() makes now),
        or None."""
        ...

    def forget(self) -> None:
        """Let go of what the runtime keeps for this home's servers once none is left there."""
        ...


class DockerDefaults(Protocol):
    """The Docker engine and images servers get when their own are not given: the settings'
    `docker` section (settings.DockerSettings) or the plain copy the service process is handed
    (services.daemon.ServiceConfig), which keeps pydantic out of that process."""

    @property
    def host(self) -> str | None: ...

    @property
    def ssh(self) -> DockerSshSettings:
        """How ssh reaches a remote engine (settings.DockerSshSettings)."""
        ...

    def image(self, setting: str) -> str:
        """The image for one engine, by its setting's name
        (runtimes.docker.images.EngineImage.setting)."""
        ...
