"""The runtimes of one home, and the one place that picks a server's: the native runtime, and a
Docker runtime per Docker engine (made only when a server on it is touched; runtimes/docker
imports the `docker` SDK when an engine is first reached). Also what this home keeps across
Docker engines: the census of its containers, the engines it has used, and the Compose export."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager.kinds import RuntimeKind
from vpn_manager.runtimes.base import DockerDefaults, ProcessState, Runtime, ServerFiles
from vpn_manager.runtimes.docker import census
from vpn_manager.runtimes.docker.hosts import forget_host, hosts_used, tidy_hosts
from vpn_manager.runtimes.docker.options import compose_service, labels
from vpn_manager.runtimes.docker.runtime import DockerRuntime
from vpn_manager.runtimes.native import NativeRuntime

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine, ServerSpec


class Runtimes:
    def __init__(
        self,
        native: NativeRuntime,
        home: str,
        logs_dir: Path,
        run_dir: Path,
        docker: DockerDefaults,
    ) -> None:
        self.native = native
        self.home = home
        self.logs_dir = logs_dir
        self.run_dir = run_dir
        self.docker_settings = docker
        self._dockers: dict[str | None, DockerRuntime] = {}

    def runtime_of(self, spec: ServerSpec) -> Runtime:
        """Where a server runs."""
        return self.of(spec.runtime, spec.docker_host)

    def of(self, kind: str, docker_host: str | None = None) -> Runtime:
        """The runtime of a kind (for Docker on the engine `docker_host`, else the default)."""
        pick: dict[RuntimeKind, Callable[[], Runtime]] = {
            RuntimeKind.NATIVE: lambda: self.native,
            RuntimeKind.DOCKER: lambda: self.docker(docker_host),
        }
        return pick[RuntimeKind(kind)]()

    def docker(self, host: str | None = None) -> DockerRuntime:
        """The Docker runtime for one engine (None: settings' docker.host, else the default);
        the SDK is imported and the engine reached only when it is used."""
        host = host or self.docker_settings.host
        if host not in self._dockers:
            self._dockers[host] = DockerRuntime(
                self.home,
                self.logs_dir,
                host,
                run_dir=self.run_dir,
                ssh=lambda: self.docker_settings.ssh,  # only for a remote engine
                defaults=self.docker_settings,
            )
        return self._dockers[host]

    def key_of(self, spec: ServerSpec) -> str | None:
        """The Docker engine a server runs on as docker-hosts.json names it ("" for the default
        one); None for a server that is not in a container."""
        if RuntimeKind(spec.runtime) is not RuntimeKind.DOCKER:
            return None
        return spec.docker_host or self.docker_settings.host or ""

    # -- this home across Docker engines -------------------------------------------------------
    def tidy(self) -> None:
        """Remove what a docker-hosts.json write killed half-way left."""
        tidy_hosts(self.run_dir)

    def used(self, specs: Collection[ServerSpec]) -> set[str]:
        """The Docker engines these servers run on."""
        return {key for key in map(self.key_of, specs) if key is not None}

    def ever_used(self) -> bool:
        """Whether this home has made containers on any Docker engine."""
        return bool(hosts_used(self.run_dir))

    async def census(self, specs: Collection[ServerSpec]) -> tuple[list[census.Census], list[str]]:
        """This home's containers on every Docker engine it uses or has used, each with whether
        a server owns it, and the engines that cannot be reached (see docker/census.py)."""
        owners = {spec.name: key for spec in specs if (key := self.key_of(spec)) is not None}
        return await census.census(self.docker, self.run_dir, owners)

    def forget_engine(self, key: str) -> None:
        """Forget a Docker engine where nothing of this home is left."""
        forget_host(self.run_dir, key)

    async def out_of_step(
        self,
        specs: list[ServerSpec],
        wanted: Collection[str],
        remade: Callable[[ServerSpec, ProcessState], str | None],
    ) -> list[str]:
        """Docker servers and containers out of step, each with its fix (docker/census.py)."""
        seen, unreachable = await self.census(specs)
        return census.out_of_step(seen, unreachable, specs, self.key_of, wanted, remade)

    def export_compose(
        self,
        specs: list[ServerSpec],
        engine_of: Callable[[ServerSpec], Engine],
        where: Callable[[str], ServerFiles],
    ) -> str:
        """A docker-compose.yml that runs this home's servers on this machine's Docker engine as
        the runtime does: same images, commands, labels, ports, read-only mounts, health checks
        and network (a remote engine's containers mount nothing of this machine's)."""
        services: dict[str, object] = {}
        for spec in specs:
            if self.key_of(spec) is None:
                continue
            runtime = self.docker(spec.docker_host)
            if runtime.is_remote():
                continue
            engine = engine_of(spec)
            launch = runtime.container_launch(engine, spec, where(spec.name))
            name = runtime.container_name(spec.name)
            services[spec.name] = compose_service(
                name, launch, labels(spec.name, engine.name, self.home)
            )
        return census.compose(self.home, services)
