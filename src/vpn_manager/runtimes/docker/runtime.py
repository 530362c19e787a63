"""The Runtime contract for servers in containers on one Docker engine: how a server is placed
in its container (listening on every address of it, logging to its output), the container it is
launched in (image, ports, mounts, health check), its files copied into a remote container, its
control APIs reached through the ssh tunnel, and whether its container is still the one the
server needs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.engines import guard
from vpn_manager.engines.base import Engine, Files
from vpn_manager.engines.registry import engine_for, engine_name, settings_of
from vpn_manager.errors import VpnError
from vpn_manager.runtimes.base import (
    ContainerLaunch,
    DockerDefaults,
    Launch,
    ProcessState,
    PublishedPort,
    ServerFiles,
)
from vpn_manager.runtimes.docker.containers import Containers
from vpn_manager.runtimes.docker.hosts import base_url_of, remember_host
from vpn_manager.runtimes.docker.hosts import is_remote as remote_url
from vpn_manager.runtimes.docker.images import image_facts
from vpn_manager.runtimes.docker.options import launch_digest
from vpn_manager.specs import ServerSpec

if TYPE_CHECKING:
    from vpn_manager.settings import DockerSshSettings

log = logging.getLogger("vpn_manager.servers")


class DockerRuntime(Containers):
    """Servers of one home on one Docker engine. `defaults`: the images servers get when they
    name none (settings' docker section)."""

    def __init__(
        self,
        home: str,
        logs_dir: Path,
        host: str | None = None,
        run_dir: Path | None = None,
        ssh: Callable[[], DockerSshSettings] | None = None,
        defaults: DockerDefaults | None = None,
    ) -> None:
        super().__init__(home, logs_dir, host, run_dir, ssh)
        self.defaults = defaults

    # -- placing and launching -----------------------------------------------------------------
    def is_remote(self) -> bool:
        try:
            return remote_url(base_url_of(self.host))
        except VpnError:
            return False

    def placement(self, engine: str, image: str | None) -> dict[str, str | None]:
        """The image (given, else the engine's default in settings) and this engine's host; the
        engine is reached now (a bad host fails before anything is made) and remembered for the
        census before any container of the server can exist."""
        facts = image_facts(engine)
        self.client  # noqa: B018 -- connects, or says why it cannot
        remember_host(self.run_dir, self.host or "")
        return {"image": image or self._default_image(facts.setting), "docker_host": self.host}

    def _default_image(self, setting: str) -> str:
        if self.defaults is None:
            # vpn_manager.settings loads pydantic, which the long-running service never needs.
            from vpn_manager.settings import DockerSettings

            return DockerSettings().image(setting)
        return self.defaults.image(setting)

    def _private(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        """The server with its private control directory (for unix-socket control APIs) where
        this machine can share one with the container (mounted read-write at the same path):
        on this machine's engine, not on a remote one."""
        if self.is_remote():
            return spec
        return dataclasses.replace(spec, control_dir=str(where.control()))

    def placed(self, spec: ServerSpec, where: ServerFiles) -> tuple[ServerSpec, Files]:
        """Listening on every address of the container (Docker publishes the ports on the host
        addresses asked for; TCP control APIs on 127.0.0.1 only) and logging to the container's
        output (read with `docker logs` / `vpn server logs`)."""
        spec = self._private(spec, where)
        anywhere = "::" if ":" in spec.listen else "0.0.0.0"
        inside = dataclasses.replace(spec, listen=anywhere, control_listen="0.0.0.0")
        config = where.files.config
        return inside, Files(
            config=config, access_log=Path("/dev/stdout"), error_log=Path("/dev/stderr")
        )

    def launch(self, engine: Engine, spec: ServerSpec, where: ServerFiles) -> Launch:
        container = self.container_launch(engine, spec, where)
        return Launch(
            server=spec.name,
            argv=[container.binary, *container.args],
            log_file=self.log_file(spec.name),
            container=container,
        )

    def container_launch(
        self, engine: Engine, spec: ServerSpec, where: ServerFiles
    ) -> ContainerLaunch:
        """Image, engine arguments, the ports to publish (the server's own as the protocol
        needs, every control port on 127.0.0.1 only), the directories to mount read-only, and
        the health check."""
        facts = image_facts(engine.name)
        ports = [
            PublishedPort(spec.listen, spec.port, spec.port, proto)
            for proto in engine.transports(spec)
        ]
        inside, _ = self.placed(spec, where)
        ports += [
            PublishedPort("127.0.0.1", port, port, control=True)
            for port in sorted(engine.control_ports(inside))
        ]
        return ContainerLaunch(
            image=spec.image or self._default_image(facts.setting),
            engine=engine.name,
            binary=facts.binary,
            args=facts.args(where.files.config, spec),
            ports=ports,
            mounts=directories(where),
            control_dir=Path(inside.control_dir)
            if facts.control_socket and inside.control_dir
            else None,
            health=facts.health(spec),
            health_binary=facts.health_binary,
            cap_add=list(facts.cap_add),
            devices=list(facts.devices),
            sysctls=facts.sysctls(spec),
        )

    async def put_files(self, server: str, where: ServerFiles) -> None:
        """On a remote engine, the rendered files into the running container too, so that a
        restart by Docker's restart policy reads the current ones (a local one has them
        mounted)."""
        await asyncio.to_thread(self.copy_in, server, directories(where))

    async def reach(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        """On this machine's engine the server as it is, with its private control directory;
        on a remote engine with its control ports swapped for the local ends of the ssh tunnel
        (kept to our uid by the firewall, like the ports of a local engine) and a wildcard
        listen address for the remote host's address (where the server's own port is
        probed)."""
        found = await asyncio.to_thread(self._reached, spec, where)
        if self.remote:
            ends = engine_for(engine_name(found)).control_ports(found)
            if not await guard.protected(self.home, spec.name, ends):
                warning = await guard.protect(self.home, spec.name, ends)
                if warning:
                    log.warning("%s: %s", spec.name, warning)
        return found

    def _reached(self, spec: ServerSpec, where: ServerFiles) -> ServerSpec:
        self.client  # noqa: B018 -- connects: whether the engine is remote is known then
        if not self.remote:
            return self._private(spec, where)
        settings = settings_of(spec)  # its model declares the control ports
        local = self.tunnelled(spec.name, settings.control_ports())
        moved = settings.with_control_ports(local).to_dict()
        listen = spec.listen
        if listen in ("0.0.0.0", "::"):
            listen = self.address() or listen
        return dataclasses.replace(spec, settings=moved, listen=listen)

    # -- running -------------------------------------------------------------------------------
    def stats(self, server: str) -> dict[str, Any] | None:
        return self.inspect(server)

    # -- staying in line -----------------------------------------------------------------------
    def reloads_in_place(self) -> bool:
        return False  # no SIGHUP into a container from here: a new container instead

    def cuts_sessions(self, engine: str) -> bool:
        """Only through the engine's API: `ss -K` on the host does not reach the container's
        network namespace."""
        return image_facts(engine).cuts_sessions

    def epoch(self, server: str, state: ProcessState | None = None) -> str:
        return (state or self.state(server)).epoch

    def remade_because(
        self, engine: Engine, spec: ServerSpec, where: ServerFiles, state: ProcessState
    ) -> str | None:
        """It is not on this home's network (the network was removed or the container taken
        off it: its ports are gone), or it was made for another launch than the database's
        (another port, image or config: a command killed between the database and the
        container, a container made by hand)."""
        if not state.running:
            return None
        if not state.networked:
            return "its container was off this home's network"
        launch = self.container_launch(engine, spec, where)
        for port in launch.ports:
            if not port.control and state.bindings.get(port.key) != port.host_port:
                return f"its container does not publish port {port.host_port}/{port.proto}"
        if state.launch != launch_digest(launch):
            return "its container was made for another port, image or config than the database's"
        return None


def directories(where: ServerFiles) -> list[Path]:
    """What the engine reads besides its arguments: the rendered config's directory, and the
    server's keys directory when it holds anything (certificates). Mounted read-only on this
    machine's Docker engine, copied into the container on a remote one."""
    found = [where.files.config.parent]
    if where.keys_dir.is_dir() and any(where.keys_dir.iterdir()):
        found.append(where.keys_dir)
    return found
