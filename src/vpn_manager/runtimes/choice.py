"""The runtimes of one home, and the one place that picks a server's: the native runtime, and a
Docker runtime per Docker engine (made only when a server on it is touched; runtimes/docker
imports the `docker` SDK when an engine is first reached). Also what this home keeps across
Docker engines: the census of its containers, the engines it has used, and the Compose export.

The Docker runtime's own modules (some ten, about 30 ms to import) are loaded by `_docker`, this
module's one lazy import, when a Docker engine is first in play: a home of native servers, and
`vpn serve` over one (its idle memory is budgeted), never loads them."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from vpn_manager.kinds import RuntimeKind
from vpn_manager.runtimes.base import (
    DOCKER_HOSTS_FILE,
    DockerDefaults,
    ProcessState,
    Runtime,
    ServerFiles,
)
from vpn_manager.runtimes.native import NativeRuntime

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine
    from vpn_manager.runtimes.docker.census import Census
    from vpn_manager.runtimes.docker.runtime import DockerRuntime
    from vpn_manager.specs import ServerSpec


def _docker() -> tuple[ModuleType, ModuleType, ModuleType, type[DockerRuntime]]:
    """The Docker runtime's modules: census, hosts, options and the runtime's class."""
    from vpn_manager.runtimes.docker import census, hosts, options
    from vpn_manager.runtimes.docker.runtime import DockerRuntime

    return census, hosts, options, DockerRuntime


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
            _, _, _, docker_runtime = _docker()
            self._dockers[host] = docker_runtime(
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
        if self._docker_files():
            _docker()[1].tidy_hosts(self.run_dir)

    def used(self, specs: Collection[ServerSpec]) -> set[str]:
        """The Docker engines these servers run on."""
        return {key for key in map(self.key_of, specs) if key is not None}

    def ever_used(self) -> bool:
        """Whether this home has made containers on any Docker engine."""
        return self._docker_files() and bool(_docker()[1].hosts_used(self.run_dir))

    def _docker_files(self) -> bool:
        """Whether docker-hosts.json, or a temp file of one, is there: a home that never used
        Docker has neither (and need not load the Docker runtime to know it)."""
        try:
            return any(DOCKER_HOSTS_FILE in name for name in os.listdir(self.run_dir))
        except OSError:
            return False

    async def census(self, specs: Collection[ServerSpec]) -> tuple[list[Census], list[str]]:
        """This home's containers on every Docker engine it uses or has used, each with whether
        a server owns it, and the engines that cannot be reached (see docker/census.py)."""
        owners = {spec.name: key for spec in specs if (key := self.key_of(spec)) is not None}
        found: tuple[list[Census], list[str]] = await _docker()[0].census(
            self.docker, self.run_dir, owners
        )
        return found

    def forget_engine(self, key: str) -> None:
        """Forget a Docker engine where nothing of this home is left."""
        _docker()[1].forget_host(self.run_dir, key)

    async def out_of_step(
        self,
        specs: list[ServerSpec],
        wanted: Collection[str],
        remade: Callable[[ServerSpec, ProcessState], str | None],
    ) -> list[str]:
        """Docker servers and containers out of step, each with its fix (docker/census.py)."""
        seen, unreachable = await self.census(specs)
        fixes: list[str] = _docker()[0].out_of_step(
            seen, unreachable, specs, self.key_of, wanted, remade
        )
        return fixes

    def export_compose(
        self,
        specs: list[ServerSpec],
        engine_of: Callable[[ServerSpec], Engine],
        where: Callable[[str], ServerFiles],
    ) -> str:
        """A docker-compose.yml that runs this home's servers on this machine's Docker engine as
        the runtime does: same images, commands, labels, ports, read-only mounts, health checks
        and network (a remote engine's containers mount nothing of this machine's)."""
        census, _, options, _ = _docker()
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
            services[spec.name] = options.compose_service(
                name, launch, options.labels(spec.name, engine.name, self.home)
            )
        compose: str = census.compose(self.home, services)
        return compose
