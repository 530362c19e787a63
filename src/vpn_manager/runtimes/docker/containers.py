"""This home's containers on one Docker engine, through the Engine API: make, start, stop and
remove one server's container, its state, logs (logs.py) and stats, files copied in, control
ports reached and commands run (exec.py) on a remote engine, and the home's network
(network.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.errors import EngineError
from vpn_manager.paths import entry
from vpn_manager.runtimes.base import Launch, ProcessState
from vpn_manager.runtimes.docker.exec import ContainerCommands
from vpn_manager.runtimes.docker.hosts import base_url_of, connect, describe_host, is_remote, reason
from vpn_manager.runtimes.docker.logs import follow_lines, keep_logs, last_lines
from vpn_manager.runtimes.docker.network import gateway, home_network, remove_network
from vpn_manager.runtimes.docker.options import (
    LABEL_HOME,
    LABEL_LAUNCH,
    LABEL_SERVER,
    container_name,
    create_options,
    labels,
    launch_digest,
    network_name,
    tarball,
)
from vpn_manager.runtimes.docker.views import state_of, summary

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

    from vpn_manager.runtimes.docker.ssh import Tunnel
    from vpn_manager.settings import DockerSshSettings


class Containers:
    """This home's containers on one Docker engine."""

    def __init__(
        self,
        home: str,
        logs_dir: Path,
        host: str | None = None,
        run_dir: Path | None = None,
        ssh: Callable[[], DockerSshSettings] | None = None,
    ) -> None:
        self.home = home
        self.logs_dir = logs_dir
        self.host = host
        self._client: DockerClient | None = None
        self.run_dir = run_dir or logs_dir.parent / "run"
        self.ssh = ssh
        self.tunnel: Tunnel | None = None
        self._engine_id: str | None = None

    @property
    def remote(self) -> bool:
        """Whether the engine runs on another machine (reached over ssh); known once connected."""
        return self.tunnel is not None

    @property
    def client(self) -> DockerClient:
        """The SDK client, connected on first use (for a remote engine through the ssh tunnel,
        which is opened again if it went away: idle, network)."""
        if self._client is None:
            base_url = base_url_of(self.host)
            if self.tunnel is None and is_remote(base_url, describe_host(self.host)):
                # The tunnel's module and its settings load pydantic, which the long-running
                # service needs only for a remote engine.
                from vpn_manager.runtimes.docker.ssh import Tunnel
                from vpn_manager.settings import DockerSshSettings

                assert base_url is not None
                settings = self.ssh() if self.ssh else DockerSshSettings()
                self.tunnel = Tunnel(base_url, self.home, self.run_dir, settings)
            self._client = connect(self.host, self.tunnel)
        elif self.tunnel is not None:
            self.tunnel.open()
        return self._client

    def container_name(self, server: str) -> str:
        return container_name(server, self.home)

    def log_file(self, server: str) -> Path:
        """Where a removed container's logs are kept (the native runtime's log file)."""
        return entry(self.logs_dir, server, ".log")

    def _container(self, server: str) -> Container | None:
        from docker.errors import NotFound

        try:
            container = self.client.containers.get(self.container_name(server))
        except NotFound:
            return None
        except Exception as exc:  # the SDK raises requests' errors too
            raise self._error(f"Cannot inspect the container of {server}", exc) from None
        if container.labels.get(LABEL_HOME) != self.home:
            raise EngineError(
                f"A container named {container.name} exists but is not one of this home's.",
                hint=f"Remove it if it is stale: docker rm -f {container.name}",
            )
        return container

    def _error(self, what: str, exc: BaseException) -> EngineError:
        """`what` failed, in one sentence; an engine that could not be reached is said once
        (the EngineError every request raises then, host and all), not wrapped again."""
        if isinstance(exc, EngineError):
            return exc
        return EngineError(f"{what}: {reason(exc)}.", hint="See `docker info` and `docker ps -a`.")

    # -- the container ----------------------------------------------------------------
    def state(self, server: str) -> ProcessState:
        container = self._container(server)
        if container is None:
            return ProcessState(running=False, exit_detail="no container")
        return state_of(container, self.home)

    def exited(self, server: str) -> int | None:
        container = self._container(server)
        if container is None:
            return None
        state = container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead") or (
            state.get("Status") == "restarting" and state.get("ExitCode")
        ):
            return int(state.get("ExitCode") or 0)
        return None

    async def start(self, launch: Launch) -> int:
        return await asyncio.to_thread(self._start, launch)

    def _start(self, launch: Launch) -> int:
        if launch.container is None:
            raise EngineError(f"{launch.server} has no container to run (a native server?).")
        existing = self._container(launch.server)
        if existing is not None and existing.status == "running":
            return int(existing.attrs["State"]["Pid"])
        if existing is not None:
            keep_logs(self.log_file(launch.server), existing)
            existing.remove(force=True)
        self._ensure_image(launch.container.image)
        network = home_network(self.client, self.home)
        options = create_options(
            self.container_name(launch.server),
            launch.container,
            labels(launch.server, launch.container.engine, self.home)
            | {LABEL_LAUNCH: launch_digest(launch.container)},
            network.name or network_name(self.home),
            remote=self.remote,
        )
        from docker.errors import APIError

        container: Container | None = None
        try:
            container = self.client.containers.create(**options)
            if self.remote:
                container.put_archive("/", tarball(launch.container.mounts))
            container.start()
            container.reload()
        except APIError as exc:
            if container is not None:
                with contextlib.suppress(APIError):
                    container.remove(force=True)
            raise EngineError(
                f"Docker could not start the container for {launch.server}: {reason(exc)}.",
                hint="A published port may be taken: see `ss -ltnup`, or pick another --port.",
            ) from None
        return int(container.attrs["State"]["Pid"] or 0)

    def _ensure_image(self, image: str) -> None:
        from docker.errors import DockerException, ImageNotFound

        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        except DockerException as exc:
            raise self._error(f"Cannot look up the image {image}", exc) from None
        try:
            self.client.images.pull(image)
        except DockerException as exc:
            raise EngineError(
                f"The image {image} is not on the Docker host and pulling it failed: "
                f"{reason(exc)}.",
                hint="Pull or build it there (`docker pull …`), or give another --image.",
            ) from None

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        return await asyncio.to_thread(self._stop, server, timeout)

    def _stop(self, server: str, timeout: float) -> bool:
        from docker.errors import APIError, NotFound

        container = self._container(server)
        if container is None:
            return False
        was_running = container.status in ("running", "restarting")
        try:
            container.stop(timeout=max(1, round(timeout)))
            keep_logs(self.log_file(server), container)
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise self._error(f"Docker could not remove the container of {server}", exc) from None
        return was_running

    def logs(self, server: str, lines: int = 100, also: Sequence[Path] = ()) -> list[str]:
        """The kept logs of its removed containers, then its container's output (`also`:
        nothing is written there in a container)."""
        return last_lines(self.log_file(server), self._container(server), lines)

    def follow(self, server: str, lines: int = 10, also: Sequence[Path] = ()) -> Iterator[str]:
        container = self._container(server)
        if container is None:
            raise EngineError(
                f"{server} has no container, so there are no logs to follow.",
                hint=f"Start it: vpn server start {server}",
            )
        yield from follow_lines(container, lines)

    # -- remote engines ------------------------------------------------------------------------
    def copy_in(self, server: str, directories: list[Path]) -> None:
        """On a remote engine: put the current files of these directories into the server's
        container (after a change applied live, so that a restart by Docker reads them). Does
        nothing on a local engine (they are mounted) or without a container."""
        if not self.remote:
            return
        container = self._container(server)
        if container is None:
            return
        from docker.errors import APIError

        try:
            container.put_archive("/", tarball(directories))
        except APIError as exc:
            raise self._error(
                f"Cannot copy the config into the container of {server}", exc
            ) from None

    def tunnelled(self, server: str, ports: list[int]) -> dict[int, int]:
        """Where this machine reaches each control API port of the server's container: the
        same port on a local engine; on a remote one a local port of the ssh tunnel to the
        port Docker published on the remote loopback."""
        if self.tunnel is None:
            return {port: port for port in ports}
        container = self._container(server)
        if container is None:
            raise EngineError(f"{server} has no container.", hint=f"vpn server start {server}")
        published = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        reached: dict[int, int] = {}
        for port in ports:
            bindings = published.get(f"{port}/tcp") or []
            if not bindings:
                raise EngineError(
                    f"The container of {server} does not publish its API port {port}.",
                    hint=f"Recreate it: vpn server restart {server}",
                )
            reached[port] = self.tunnel.forward(int(bindings[0]["HostPort"]))
        return reached

    def address(self) -> str | None:
        """The remote host's address (where a server's own port is reached); None when the
        engine is this machine's."""
        return None if self.tunnel is None else self.tunnel.address()

    def close(self) -> None:
        """Close the client and end the ssh tunnel, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.tunnel is not None:
            self.tunnel.close()

    def commands(self, server: str) -> ContainerCommands:
        """Run an engine's helper commands inside this server's container (Docker exec)."""
        return ContainerCommands(lambda: self.client, self.container_name(server), server)

    # -- Docker-only views ---------------------------------------------------------------------
    def inspect(self, server: str, with_stats: bool = True) -> dict[str, Any] | None:
        """The container's name, id, image, state, health, restarts and (one sample of) CPU,
        memory and network use; None if there is no container."""
        container = self._container(server)
        if container is None:
            return None
        return summary(container, with_stats)

    def containers(self) -> dict[str, tuple[str, ProcessState]]:
        """Every container of this home on this engine: server name → (container, its state)."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_HOME}={self.home}"}
            )
        except Exception as exc:  # the SDK raises requests' errors too
            raise self._error(
                f"Cannot list the containers on {describe_host(self.host)}", exc
            ) from None
        return {
            c.labels.get(LABEL_SERVER, c.name or ""): (c.name or c.short_id, state_of(c, self.home))
            for c in found
            if c.labels.get(LABEL_HOME) == self.home
        }

    def discard(self, container: str) -> None:
        """Remove one of this home's containers by its name (one that no server owns)."""
        from docker.errors import NotFound

        try:
            found = self.client.containers.get(container)
            if found.labels.get(LABEL_HOME) == self.home:
                found.remove(force=True)
        except NotFound:
            pass
        except Exception as exc:  # the SDK raises requests' errors too
            raise self._error(f"Cannot remove the container {container}", exc) from None

    def engine_id(self) -> str:
        """The Docker engine's own id, read once: two hosts that reach one engine (its socket
        and a tcp:// relay to it, or a context) have the same."""
        if self._engine_id is None:
            try:
                self._engine_id = str(self.client.info().get("ID") or self.host or "")
            except Exception as exc:  # the SDK raises requests' errors too
                raise self._error(f"Cannot ask {describe_host(self.host)} who it is", exc) from None
        return self._engine_id

    def forget(self) -> None:
        """Remove this home's network once no container uses it (after the last server goes)."""
        if not self.containers():
            remove_network(self.client, self.home)

    def gateway(self) -> str | None:
        """The host's address on this home's network (what a container reaches the host by)."""
        return gateway(self.client, self.home)
