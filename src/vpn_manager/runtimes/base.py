"""The runtime contract: start, stop and inspect one engine process for one server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from vpn_manager.settings import DockerSshSettings


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


class Runtime(Protocol):
    """Where engines run. Implementations: runtimes.native.NativeRuntime,
    runtimes.docker.DockerRuntime."""

    async def start(self, launch: Launch) -> int:
        """Start the server's engine unless it runs already; return its pid. Never two."""
        ...

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        """Stop the engine; True if one was running."""
        ...

    def state(self, server: str) -> ProcessState: ...

    def logs(self, server: str, lines: int = 100) -> list[str]: ...

    def follow(self, server: str, lines: int = 10) -> Iterator[str]:
        """The last `lines` log lines, then new ones as they come (until the caller stops)."""
        ...

    def exited(self, server: str) -> int | None:
        """The exit code of an engine this process started and that has ended, else None."""
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
        """The image for one engine, by its setting's name (runtimes.images.EngineImage.setting)."""
        ...
