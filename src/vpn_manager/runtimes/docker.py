"""Docker runtime: each server's engine runs in a container through the Docker Engine API.

One container per server, named `vpn-SERVER-HOMEID` (HOMEID: a short hash of the manager's home,
so two homes on one Docker engine never touch each other's containers) and labelled
`vpn-manager.server`, `vpn-manager.engine` and `vpn-manager.home`. The containers of one home share
one bridge network, `vpn-manager-HOMEID`, with inter-container traffic off: the engines' TCP
control APIs (which listen on every address inside the container) are reachable from the host
only, where they are published on 127.0.0.1 and kept to our uid by the firewall
(engines/guard.py); Xray's API is a unix socket in the server's private directory, mounted
read-write. Restart policy unless-stopped: a container that dies is
started again by Docker; `vpn serve` recreates one that is gone.

On this machine's engine (unix://, tcp:// to loopback) the container mounts the server's
rendered-config directory and its keys directory read-only at the same paths as on the host (a
directory, not the file: an atomic rename on the host shows in the container). On a remote engine
(ssh://, see is_remote) nothing is mounted: the same directories are copied into the container
before it starts and again after every change (copy_in), and the engine's socket and the control
API ports are reached through an ssh tunnel (runtimes/ssh.py).

Stopping a server removes its container (a start always creates it from the current config); its
logs are kept first in the native log file, so `vpn server logs` still has them. The `docker`
SDK is imported only here, and only when a Docker server is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vpn_manager.errors import EngineError, InvalidInput
from vpn_manager.paths import entry, home_id
from vpn_manager.runtimes.base import ContainerLaunch, Launch, ProcessState
from vpn_manager.runtimes.native import tail

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.networks import Network

    from vpn_manager.runtimes.dockerexec import ContainerCommands
    from vpn_manager.runtimes.ssh import Tunnel
    from vpn_manager.settings import DockerSshSettings

LABEL_SERVER = "vpn-manager.server"
LABEL_ENGINE = "vpn-manager.engine"
LABEL_HOME = "vpn-manager.home"
LABEL_LAUNCH = "vpn-manager.launch"
RESTART_POLICY = "unless-stopped"
HEALTH_INTERVAL_S = 5
API_TIMEOUT_S = 30


def container_name(server: str, home: str) -> str:
    return f"vpn-{server}-{home_id(home)}"


def network_name(home: str) -> str:
    return f"vpn-manager-{home_id(home)}"


def labels(server: str, engine: str, home: str) -> dict[str, str]:
    return {LABEL_SERVER: server, LABEL_ENGINE: engine, LABEL_HOME: home}


def launch_digest(launch: ContainerLaunch) -> str:
    """A digest of everything a container is made with (image, command, published ports,
    mounts, privileges, health check): kept as the container's label, so a container made for
    another launch than the server's (another port, image or config path) is seen as such."""
    import hashlib
    import json

    text = json.dumps(dataclasses.asdict(launch), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_host(host: str | None) -> str:
    return host or os.environ.get("DOCKER_HOST") or "the local socket"


def _reason(exc: BaseException) -> str:
    """The root cause of a Docker SDK error in a few words (its own messages nest whole reprs)."""
    seen: BaseException | None = exc
    while seen is not None:
        for arg in (seen, *seen.args):
            if isinstance(arg, OSError) and arg.strerror:
                return arg.strerror.rstrip(".")
        seen = seen.__cause__ or seen.__context__
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def base_url_of(host: str | None) -> str | None:
    """The URL of the Docker engine `host` names: a URL as it is, a Docker context's endpoint,
    or (None) DOCKER_HOST; None again means the local socket."""
    if host is None:
        return os.environ.get("DOCKER_HOST") or None
    return host if "://" in host else _context_host(host)


def is_remote(base_url: str | None, where: str = "") -> bool:
    """Whether the Docker engine at `base_url` runs on another machine, which decides how the
    runtime reaches it: unix://, npipe://, fd:// and tcp:// to a loopback address are this
    machine's (configs bind-mounted, control APIs on this loopback); ssh:// is always remote,
    even to 127.0.0.1 (files copied into the containers, the engine's socket and the control
    APIs tunnelled over ssh). A tcp:// engine on another address is refused: the engines'
    control APIs have no authentication and are never published on a public address, and
    plain tcp:// gives no private way to them."""
    if base_url is None or base_url.startswith(("unix://", "npipe://", "fd://")):
        return False
    if base_url.startswith("ssh://"):
        return True
    address = urlsplit(base_url if "://" in base_url else f"tcp://{base_url}").hostname or ""
    if address == "localhost" or address.startswith("127.") or address == "::1":
        return False
    raise InvalidInput(
        f"The Docker engine at {where or base_url} is on another machine and can only be "
        "reached over ssh://, since the engines' control APIs must not be published on a "
        "network.",
        hint="Use --docker-host ssh://user@host (or a Docker context whose endpoint is ssh://).",
    )


def connect(host: str | None, tunnel: Tunnel | None = None) -> DockerClient:
    """A client for the Docker engine at `host`: a URL (unix://, tcp:// to loopback), a Docker
    context name, or None for DOCKER_HOST / the local socket; a remote (ssh://) engine through
    `tunnel`'s local socket. The engine is pinged, so an unreachable one fails here with one
    sentence."""
    import docker
    from docker.errors import DockerException

    where = describe_host(host)
    base_url = base_url_of(host)
    if tunnel is not None:
        tunnel.open()
        base_url = tunnel.docker_url
    elif is_remote(base_url, where):
        raise InvalidInput(f"The Docker engine at {where} is remote and needs an ssh tunnel.")
    try:
        if tunnel is None and host is None:  # DOCKER_HOST with its TLS settings, if any
            client = docker.from_env(timeout=API_TIMEOUT_S)
        else:
            client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S)
        _unreachable_is_engine_error(client, where, tunnel)
        client.ping()
    except DockerException as exc:
        raise EngineError(
            f"Cannot reach the Docker engine at {where}: {_reason(exc)}.",
            hint="Is Docker running, and may this user use it? Check `docker info`, or give "
            "another --docker-host (unix://…, tcp://127.0.0.1:PORT, ssh://user@host or a "
            "context).",
        ) from None
    return client


def _unreachable_is_engine_error(client: DockerClient, where: str, tunnel: Tunnel | None) -> None:
    """Every request of `client` that cannot reach the engine (refused, reset, timed out, the
    ssh tunnel gone in the middle of an answer) raises EngineError naming the engine, whichever
    SDK call made it. The SDK lets requests' errors through, and those are OSErrors: unreported,
    they passed for anyone's (the database's), and a rollback waiting for an EngineError was
    skipped. A tunnel is checked again on the next call, which starts a new master if it died."""
    from requests.exceptions import RequestException

    send = client.api.send

    def send_or_fail(request: Any, **options: Any) -> Any:
        try:
            return send(request, **options)
        except RequestException as exc:
            if tunnel is not None:
                tunnel.recheck()
            raise EngineError(
                f"Lost the Docker engine at {where}: {_connection_reason(exc)}.",
                hint="Check the ssh connection to that host and that Docker runs there; "
                "`vpn serve --once` brings its servers back in line."
                if tunnel is not None
                else "Is Docker running? Check `docker info`.",
            ) from None

    client.api.send = send_or_fail  # type: ignore[method-assign]


def _connection_reason(exc: BaseException) -> str:
    """The innermost reason a request failed ("Connection refused", "Remote end closed
    connection without response"), not requests' and urllib3's nested reprs."""
    message = ""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.rstrip(".")
        if isinstance(item, OSError) and len(item.args) == 1 and isinstance(item.args[0], str):
            message = item.args[0]  # http.client's RemoteDisconnected, urllib3's own
        pending.extend(arg for arg in item.args if isinstance(arg, BaseException))
        pending.extend(link for link in (item.__cause__, item.__context__) if link is not None)
    return (message or type(exc).__name__).rstrip(".")


def _context_host(name: str) -> str:
    from docker.context import ContextAPI
    from docker.errors import DockerException

    try:
        context = ContextAPI.get_context(name)
    except DockerException:
        context = None
    if context is None:
        raise InvalidInput(
            f"There is no Docker context named {name!r}.",
            hint="See `docker context ls`, or give a URL: unix://…, tcp://127.0.0.1:PORT, "
            "ssh://user@host.",
        )
    return str(context.Host)


def _timestamp(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    if not value or value.startswith("0001-"):
        return None
    head, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        return datetime.fromisoformat(f"{head}.{fraction or '0'}").replace(tzinfo=UTC)
    except ValueError:
        return None


def create_options(
    name: str,
    launch: ContainerLaunch,
    container_labels: dict[str, str],
    network: str,
    remote: bool = False,
) -> dict[str, Any]:
    """The containers.create() arguments for a launch (export_compose says the same in YAML).
    On a `remote` engine nothing is mounted (the files are copied in: see copy_in) and the
    control API ports are published on the remote loopback at ports Docker picks (they are
    reached through the ssh tunnel, which asks the container where they went)."""
    ports: dict[str, tuple[str, int | None]] = {
        p.key: (
            p.host_ip,
            None if remote and p.control else p.host_port,
        )
        for p in launch.ports
    }
    options: dict[str, Any] = {
        "image": launch.image,
        "name": name,
        "entrypoint": [launch.binary],
        "command": launch.args,
        "labels": container_labels,
        "restart_policy": {"Name": RESTART_POLICY},
        "ports": ports,
        "volumes": {} if remote else _volumes(launch),
        "network": network,
        "detach": True,
    }
    options |= _privileges(launch)
    if launch.health_test:
        seconds = 1_000_000_000
        options["healthcheck"] = {
            "test": launch.health_test,
            "interval": HEALTH_INTERVAL_S * seconds,
            "timeout": 3 * seconds,
            "retries": 3,
            "start_period": 2 * seconds,
        }
    return options


def compose_service(
    name: str, launch: ContainerLaunch, container_labels: dict[str, str]
) -> dict[str, Any]:
    """One docker-compose service that runs the same container as create_options()."""
    service: dict[str, Any] = {
        "image": launch.image,
        "container_name": name,
        "entrypoint": [launch.binary],
        "command": launch.args,
        "labels": container_labels,
        "restart": RESTART_POLICY,
        # The short syntax: Compose file format 3.x has no host address in the long one.
        "ports": [
            f"{_bracketed(p.host_ip)}:{p.host_port}:{p.container_port}/{p.proto}"
            for p in launch.ports
        ],
        "volumes": [
            {"type": "bind", "source": source, "target": source, "read_only": how["mode"] == "ro"}
            for source, how in _volumes(launch).items()
        ],
    }
    service |= _privileges(launch, compose=True)
    if launch.health_test:
        service["healthcheck"] = {
            "test": launch.health_test,
            "interval": f"{HEALTH_INTERVAL_S}s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "2s",
        }
    return service


def _volumes(launch: ContainerLaunch) -> dict[str, dict[str, str]]:
    """The bind mounts, each at its host path: the config and keys read-only, the private
    control directory (where the engine makes its API socket) read-write."""
    found = {str(path): {"bind": str(path), "mode": "ro"} for path in launch.mounts}
    if launch.control_dir is not None:
        found[str(launch.control_dir)] = {"bind": str(launch.control_dir), "mode": "rw"}
    return found


def _privileges(launch: ContainerLaunch, compose: bool = False) -> dict[str, Any]:
    """Capabilities, devices and sysctls, only for the engines that ask for them (WireGuard:
    NET_ADMIN and /dev/net/tun to make its interface, forwarding in its own namespace)."""
    extra: dict[str, Any] = {}
    if launch.cap_add:
        extra["cap_add"] = list(launch.cap_add)
    if launch.devices:
        extra["devices"] = [
            f"{device}:{device}" if compose else f"{device}:{device}:rwm"
            for device in launch.devices
        ]
    if launch.sysctls:
        extra["sysctls"] = dict(launch.sysctls)
    return extra


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def tarball(directories: list[Path]) -> bytes:
    """These directories and the files in them (not below) as a tar archive of their absolute
    paths, with their modes and owners (secrets stay 0600), for put_archive into "/"."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in directories:
            for path in [directory, *sorted(p for p in directory.iterdir() if p.is_file())]:
                info = tar.gettarinfo(str(path), arcname=str(path).lstrip("/"))
                info.uname = info.gname = ""
                if info.isfile():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


class DockerRuntime:
    """Servers of one home on one Docker engine."""

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
                from vpn_manager.runtimes.ssh import Tunnel
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
        return EngineError(f"{what}: {_reason(exc)}.", hint="See `docker info` and `docker ps -a`.")

    # -- the runtime contract ----------------------------------------------------------------
    def state(self, server: str) -> ProcessState:
        container = self._container(server)
        if container is None:
            return ProcessState(running=False, exit_detail="no container")
        return self._state(container)

    def _state(self, container: Container) -> ProcessState:
        state = container.attrs.get("State", {})
        running = state.get("Status") == "running"
        health = (state.get("Health") or {}).get("Status") or "no healthcheck"
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        endpoint = (networks.get(network_name(self.home)) or {}).get("EndpointID")
        published = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
        bindings = {
            key: int(found[0].get("HostPort") or 0) for key, found in published.items() if found
        }
        return ProcessState(
            running=running,
            pid=state.get("Pid") or None if running else None,
            started_at=_timestamp(state.get("StartedAt")) if running else None,
            exit_detail="" if running else f"container {state.get('Status', 'unknown')}",
            health=health,
            instance=container.id or "",
            restarts=int(container.attrs.get("RestartCount") or 0),
            launch=container.labels.get(LABEL_LAUNCH, ""),
            networked=bool(endpoint) or not running,
            bindings=bindings,
        )

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
            self._keep_logs(launch.server, existing)
            existing.remove(force=True)
        self._ensure_image(launch.container.image)
        network = self._network()
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
                f"Docker could not start the container for {launch.server}: {_reason(exc)}.",
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
                f"{_reason(exc)}.",
                hint="Pull or build it there (`docker pull …`), or give another --image.",
            ) from None

    def _network(self) -> Network:
        """This home's bridge network, made on first use; containers on it cannot reach each
        other (icc off), only the host and the outside."""
        name = network_name(self.home)
        found = self.client.networks.list(names=[name])
        exact = [n for n in found if n.name == name]
        if exact:
            return exact[0]
        return self.client.networks.create(
            name,
            driver="bridge",
            labels={LABEL_HOME: self.home},
            options={"com.docker.network.bridge.enable_icc": "false"},
        )

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
            self._keep_logs(server, container)
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise self._error(f"Docker could not remove the container of {server}", exc) from None
        return was_running

    def _keep_logs(self, server: str, container: Container) -> None:
        """Append a container's logs to the server's log file before the container goes."""
        from docker.errors import APIError

        try:
            data: bytes = container.logs(stdout=True, stderr=True, timestamps=False)
        except APIError:
            return
        if data:
            self.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.log_file(server), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data if data.endswith(b"\n") else data + b"\n")
            finally:
                os.close(fd)

    def logs(self, server: str, lines: int = 100) -> list[str]:
        kept = tail(self.log_file(server), lines)
        container = self._container(server)
        if container is None:
            return kept
        data: bytes = container.logs(stdout=True, stderr=True, tail=max(lines, 1))
        live = data.decode("utf-8", "replace").splitlines()
        return (kept + live)[-lines:] if lines else []

    def follow(self, server: str, lines: int = 10) -> Iterator[str]:
        container = self._container(server)
        if container is None:
            raise EngineError(
                f"{server} has no container, so there are no logs to follow.",
                hint=f"Start it: vpn server start {server}",
            )
        stream = container.logs(
            stdout=True, stderr=True, stream=True, follow=True, tail=max(lines, 0)
        )
        pending = b""
        for chunk in stream:
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")

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

    def reach(self, server: str, ports: list[int]) -> dict[int, int]:
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
        from vpn_manager.runtimes.dockerexec import ContainerCommands

        return ContainerCommands(self, server)

    # -- Docker-only views ---------------------------------------------------------------------
    def inspect(self, server: str, with_stats: bool = True) -> dict[str, Any] | None:
        """The container's name, id, image, state, health, restarts and (one sample of) CPU,
        memory and network use; None if there is no container."""
        container = self._container(server)
        if container is None:
            return None
        state = container.attrs.get("State", {})
        info: dict[str, Any] = {
            "name": container.name,
            "id": container.short_id,
            "image": container.attrs.get("Config", {}).get("Image", ""),
            "state": state.get("Status", "unknown"),
            "health": (state.get("Health") or {}).get("Status") or "no healthcheck",
            "restarts": int(container.attrs.get("RestartCount") or 0),
        }
        if with_stats and info["state"] == "running":
            sample = container.stats(stream=False)  # waits for a second sample: CPU needs two
            if isinstance(sample, dict):
                info.update(_usage(sample))
        return info

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
            c.labels.get(LABEL_SERVER, c.name or ""): (c.name or c.short_id, self._state(c))
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
        from docker.errors import APIError, NotFound

        if self.containers():
            return
        for network in self.client.networks.list(names=[network_name(self.home)]):
            if network.attrs.get("Labels", {}).get(LABEL_HOME) == self.home:
                with contextlib.suppress(APIError, NotFound):
                    network.remove()

    def gateway(self) -> str | None:
        """The host's address on this home's network (what a container reaches the host by)."""
        for network in self.client.networks.list(names=[network_name(self.home)]):
            for pool in network.attrs.get("IPAM", {}).get("Config") or []:
                if pool.get("Gateway"):
                    return str(pool["Gateway"])
        return None


def _usage(stats: dict[str, Any]) -> dict[str, Any]:
    """CPU percent (of one core = 100), memory without page cache, bytes through the network."""
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    percent = cpu_delta / system_delta * cores * 100 if system_delta > 0 and cpu_delta >= 0 else 0.0
    memory = stats.get("memory_stats", {})
    cache = memory.get("stats", {}).get("inactive_file", memory.get("stats", {}).get("cache", 0))
    networks = stats.get("networks") or {}
    return {
        "cpu_percent": round(percent, 2),
        "memory_bytes": max(0, int(memory.get("usage", 0)) - int(cache or 0)) or None,
        "memory_limit_bytes": memory.get("limit"),
        "net_rx_bytes": sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        "net_tx_bytes": sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
    }
