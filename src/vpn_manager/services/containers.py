"""Docker servers: what ServerService needs only for servers in containers, kept apart so the
service reads as one flow for both runtimes. The runtime itself (the Docker Engine API) is
runtimes/docker.py; what each engine's image needs is runtimes/images.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vpn_manager.engines import guard
from vpn_manager.engines.base import Engine, Files, ServerSpec
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import NotFound, VpnError
from vpn_manager.fsutil import atomic_write, exclusive_briefly, remove_temps
from vpn_manager.kinds import UDP_PROTOCOLS, DesiredState, Protocol, RuntimeKind
from vpn_manager.runtimes.base import ContainerLaunch, ProcessState, PublishedPort

if TYPE_CHECKING:
    from vpn_manager.runtimes.docker import DockerRuntime
    from vpn_manager.services.servers import ServerService

DOCKER = RuntimeKind.DOCKER.value

log = logging.getLogger("vpn_manager.servers")


def private(servers: ServerService, spec: ServerSpec) -> ServerSpec:
    """The server with its private control directory (for unix-socket control APIs), wherever
    this machine can share one with the engine: natively, and on this machine's Docker engine
    (mounted read-write at the same path); not on a remote engine."""
    if servers.on_remote_engine(spec):
        return spec
    return dataclasses.replace(spec, control_dir=str(servers.control_dir(spec.name)))


def placed(servers: ServerService, spec: ServerSpec) -> tuple[ServerSpec, Files]:
    """The server as its engine sees it where it runs: natively as it is; in a container
    listening on every address of the container (Docker publishes the ports on the host
    addresses asked for; TCP control APIs on 127.0.0.1 only) and logging to the container's
    output (read with `docker logs` / `vpn server logs`). Control sockets go in the server's
    private directory (see private())."""
    files = servers.files(spec.name)
    spec = private(servers, spec)
    if spec.runtime != DOCKER:
        return spec, files
    anywhere = "::" if ":" in spec.listen else "0.0.0.0"
    inside = dataclasses.replace(spec, listen=anywhere, control_listen="0.0.0.0")
    out = Files(config=files.config, access_log=Path("/dev/stdout"), error_log=Path("/dev/stderr"))
    return inside, out


def container_launch(servers: ServerService, engine: Engine, spec: ServerSpec) -> ContainerLaunch:
    """How the Docker runtime runs this server: image, engine arguments, the ports to publish
    (the server's own as the protocol needs, every control port on 127.0.0.1 only), the
    directories to mount read-only, and the health check."""
    from vpn_manager.runtimes.images import image_facts

    facts = image_facts(engine.name)
    protocol = Protocol(spec.protocol)
    if protocol in UDP_PROTOCOLS:
        protos: tuple[Literal["tcp", "udp"], ...] = ("udp",)
    elif protocol is Protocol.SHADOWSOCKS:
        protos = ("tcp", "udp")
    else:
        protos = ("tcp",)
    ports = [PublishedPort(spec.listen, spec.port, spec.port, proto) for proto in protos]
    inside, _ = placed(servers, spec)
    ports += [
        PublishedPort("127.0.0.1", port, port, control=True)
        for port in sorted(engine.control_ports(inside))
    ]
    files = servers.files(spec.name)
    mounts = directories(servers, spec)
    return ContainerLaunch(
        image=spec.image or servers.docker_settings.image(facts.setting),
        engine=engine.name,
        binary=facts.binary,
        args=facts.args(files.config, spec.settings),
        ports=ports,
        mounts=mounts,
        control_dir=Path(inside.control_dir)
        if facts.control_socket and inside.control_dir
        else None,
        health=facts.health(spec.settings),
        health_binary=facts.health_binary,
        cap_add=list(facts.cap_add),
        devices=list(facts.devices),
        sysctls=facts.sysctls(spec.settings),
    )


def directories(servers: ServerService, spec: ServerSpec) -> list[Path]:
    """What the engine reads besides its arguments: the rendered config's directory, and the
    server's keys directory when it holds anything (certificates). Mounted read-only on this
    machine's Docker engine, copied into the container on a remote one."""
    found = [servers.files(spec.name).config.parent]
    keys = servers.keys_dir(spec.name)
    if keys.is_dir() and any(keys.iterdir()):
        found.append(keys)
    return found


async def copy_in(servers: ServerService, spec: ServerSpec) -> None:
    """After the rendered files changed without a new container (a change applied live, or
    rolled back): on a remote Docker engine, put them into the running container too, so that
    a restart by Docker's restart policy reads the current ones (a local one has them mounted)."""
    if spec.runtime != DOCKER:
        return
    runtime = servers.docker(spec.docker_host)
    await asyncio.to_thread(runtime.copy_in, spec.name, directories(servers, spec))


async def reached(servers: ServerService, spec: ServerSpec) -> ServerSpec:
    """The server as this machine reaches it, for the engine's probe and API calls: natively
    and on this machine's Docker engine as it is, with its private control directory (where
    control sockets are); on a remote engine with its control ports swapped for the local ends
    of the ssh tunnel and a wildcard listen address for the remote host's address (where the
    server's own port is probed)."""
    if spec.runtime != DOCKER:
        return private(servers, spec)
    runtime = servers.docker(spec.docker_host)
    found = await asyncio.to_thread(_reached, servers, runtime, spec)
    if runtime.remote:
        # The tunnel's local ends are on this machine's loopback: kept to our uid as well (the
        # server's table; the remote host's own loopback is out of this firewall's reach).
        ends = servers.engine(found).control_ports(found)
        home = str(servers.paths.data_dir)
        if not await guard.protected(home, spec.name, ends):
            warning = await guard.protect(home, spec.name, ends)
            if warning:
                log.warning("%s: %s", spec.name, warning)
    return found


def _reached(servers: ServerService, runtime: DockerRuntime, spec: ServerSpec) -> ServerSpec:
    runtime.client  # noqa: B018 -- connects: whether the engine is remote is known then
    if not runtime.remote:
        return private(servers, spec)
    ports = [v for k, v in spec.settings.items() if k.endswith("_port") and isinstance(v, int)]
    local = runtime.reach(spec.name, ports)
    settings = {
        k: local[v] if k.endswith("_port") and isinstance(v, int) else v
        for k, v in spec.settings.items()
    }
    listen = spec.listen
    if listen in ("0.0.0.0", "::"):
        listen = runtime.address() or listen
    return dataclasses.replace(spec, settings=settings, listen=listen)


def remade_because(
    servers: ServerService, engine: Engine, spec: ServerSpec, state: ProcessState
) -> str | None:
    """Why a running server's container must be made again, or None: it is not on this home's
    network (the network was removed or the container taken off it: its ports are gone), or it
    was made for another launch than the database's (another port, image or config: a command
    killed between the database and the container, a container made by hand)."""
    if spec.runtime != DOCKER or not state.running:
        return None
    if not state.networked:
        return "its container was off this home's network"
    from vpn_manager.runtimes.docker import launch_digest

    launch = container_launch(servers, engine, spec)
    for port in launch.ports:
        if not port.control and state.bindings.get(port.key) != port.host_port:
            return f"its container does not publish port {port.host_port}/{port.proto}"
    if state.launch != launch_digest(launch):
        return "its container was made for another port, image or config than the database's"
    return None


def _host_key(servers: ServerService, host: str | None) -> str:
    return host or servers.docker_settings.host or ""


def _hosts_file(servers: ServerService) -> Path:
    return servers.paths.run_dir / "docker-hosts.json"


def hosts_used(servers: ServerService) -> set[str]:
    """The Docker engines this home has made containers on ("" for the default one)."""
    try:
        found = json.loads(_hosts_file(servers).read_text())
    except (OSError, ValueError):
        return set()
    return {str(host) for host in found} if isinstance(found, list) else set()


def remember_host(servers: ServerService, host: str | None) -> None:
    """Note a Docker engine a server is being made on, before its container exists: the
    service looks there for this home's containers that no server owns, even after the last
    server on it is gone."""
    key = _host_key(servers, host)
    if key in hosts_used(servers):
        return
    with _hosts_turn(servers):
        atomic_write(_hosts_file(servers), json.dumps(sorted(hosts_used(servers) | {key})) + "\n")


def _forget_host(servers: ServerService, key: str) -> None:
    with _hosts_turn(servers):
        known = hosts_used(servers)
        if key in known:
            atomic_write(_hosts_file(servers), json.dumps(sorted(known - {key})) + "\n")


def tidy_hosts(servers: ServerService) -> None:
    """Remove what a docker-hosts.json write killed half-way left."""
    if _hosts_file(servers).parent.is_dir():
        with _hosts_turn(servers):
            pass


@contextlib.contextmanager
def _hosts_turn(servers: ServerService) -> Iterator[None]:
    """The turn for changing docker-hosts.json (two commands placing servers on two engines
    at once must not drop one), in which a temp file of a writer killed half-way is removed."""
    with exclusive_briefly(servers.paths.run_dir / "turns" / "docker-hosts"):
        remove_temps(_hosts_file(servers))
        yield


@dataclasses.dataclass
class Census:
    """This home's containers on one Docker engine, and who owns them."""

    key: str
    runtime: DockerRuntime
    found: dict[str, tuple[str, ProcessState]]
    strays: dict[str, str]  # server name → container name: no server of the database owns it


async def census(servers: ServerService, specs: list[ServerSpec]) -> tuple[list[Census], list[str]]:
    """This home's containers on every Docker engine it uses or has used, each with whether a
    server owns it: a Docker server of that name on the same engine (by the engine's id, so
    two URLs of one engine agree). Also the engines that cannot be reached, one sentence
    each; their containers are left alone, and so are those of servers whose engine cannot be
    reached (whether they are strays cannot be told)."""
    docker_specs = {s.name: s for s in specs if s.runtime == DOCKER}
    keys = hosts_used(servers) | {_host_key(servers, s.docker_host) for s in docker_specs.values()}
    ids: dict[str, str | None] = {}
    seen: list[Census] = []
    unreachable: list[str] = []
    for key in sorted(keys):
        runtime = servers.docker(key or None)
        try:
            ids[key] = await asyncio.to_thread(runtime.engine_id)
            found = await asyncio.to_thread(runtime.containers)
        except VpnError as exc:
            ids[key] = None
            unreachable.append(exc.message)
            continue
        seen.append(Census(key, runtime, found, {}))
    for place in seen:
        for server, (container, _) in place.found.items():
            spec = docker_specs.get(server)
            if spec is not None:
                owner = ids.get(_host_key(servers, spec.docker_host))
                if owner is None or owner == ids[place.key]:
                    continue
            place.strays[server] = container
    return seen, unreachable


async def remove_strays(servers: ServerService, specs: list[ServerSpec]) -> list[str]:
    """Remove this home's containers that no server owns (a server's row lost, an install
    killed at the wrong moment), on every Docker engine the home has used; then forget an
    engine where nothing of this home is left (its network goes too). A server whose turn
    someone holds is being made or removed right now: its container is left alone."""
    from vpn_manager.runtimes.docker import describe_host
    from vpn_manager.services.locks import turn_taken
    from vpn_manager.storage import servers as repo

    seen, _ = await census(servers, specs)
    used = {_host_key(servers, s.docker_host) for s in specs if s.runtime == DOCKER}
    removed = []
    for place in seen:
        for server, container in sorted(place.strays.items()):
            if turn_taken(servers.paths.run_dir, server):
                continue
            async with servers.turn(server):
                async with servers.db.reading() as session:
                    if await repo.name_taken(session, server):
                        spec = repo.spec_of(await repo.server_row(session, server))
                        if (
                            spec.runtime == DOCKER
                            and _host_key(servers, spec.docker_host) == place.key
                        ):
                            continue  # made since the census
                await asyncio.to_thread(place.runtime.discard, container)
            del place.found[server]
            removed.append(
                f"removed container {container} of this home that no server owns "
                f"(on {describe_host(place.key or None)})"
            )
        if not place.found and place.key not in used:
            await asyncio.to_thread(place.runtime.forget)
            _forget_host(servers, place.key)
    return removed


async def reconcile(servers: ServerService) -> list[str]:
    """Docker servers and containers out of step, one sentence each with the fix: containers
    labelled as this home's but owned by no server, servers whose container is gone, has
    stopped while they should run, is off its network or was made for another launch, and
    Docker engines that cannot be reached."""
    from vpn_manager.storage import servers as repo

    async with servers.db.reading() as session:
        rows = [row for row, _ in await repo.list_servers(session)]
    specs = [repo.spec_of(row) for row in rows]
    wanted = {row.name for row in rows if row.desired == DesiredState.RUNNING.value}
    seen, unreachable = await census(servers, specs)
    hints = [f"{message} Its servers are shown as stopped." for message in unreachable]
    places = {place.key: place for place in seen}
    for place in seen:
        for server, container in sorted(place.strays.items()):
            state = place.found[server][1]
            hints.append(
                f"Container {container} ({'running' if state.running else 'stopped'}) is "
                f"labelled as server {server!r} of this home but no server owns it: "
                "`vpn serve --once` (or a running `vpn serve`) removes it, or "
                f"`docker rm -f {container}`."
            )
    for spec in specs:
        found = places.get(_host_key(servers, spec.docker_host))
        if spec.runtime != DOCKER or spec.name not in wanted or found is None:
            continue
        place = found
        if spec.name not in place.found:
            hints.append(
                f"Server {spec.name} should run but its container is gone: "
                f"recreate it with `vpn server start {spec.name}`."
            )
            continue
        state = place.found[spec.name][1]
        if not state.running:
            hints.append(
                f"Server {spec.name} should run but its container is stopped: "
                f"`vpn server restart {spec.name}`."
            )
            continue
        why = remade_because(servers, servers.engine(spec), spec, state)
        if why is not None:
            hints.append(
                f"Server {spec.name} is out of step: {why}. `vpn serve --once` (or a running "
                f"`vpn serve`) makes it again, or `vpn server restart {spec.name}`."
            )
    return hints


async def export_compose(servers: ServerService) -> str:
    """A docker-compose.yml that runs this home's Docker servers as the runtime does: same
    images, commands, labels, ports, read-only mounts, health checks and network."""
    import yaml

    from vpn_manager.runtimes.docker import RESTART_POLICY, compose_service, labels
    from vpn_manager.runtimes.docker import container_name as name_of
    from vpn_manager.runtimes.docker import network_name as network_of
    from vpn_manager.storage import servers as repo

    home = str(servers.paths.data_dir)
    async with servers.db.reading() as session:
        specs = [repo.spec_of(row) for row, _ in await repo.list_servers(session)]
    services: dict[str, object] = {}
    for spec in specs:
        if spec.runtime != DOCKER or servers.on_remote_engine(spec):
            continue  # a remote engine's containers mount nothing of this machine's
        engine = engine_for(spec.protocol)
        launch = container_launch(servers, engine, spec)
        service = compose_service(
            name_of(spec.name, home), launch, labels(spec.name, engine.name, home)
        )
        services[spec.name] = service
    if not services:
        raise NotFound(
            "There is no Docker server on this machine's Docker engine to export.",
            hint="Install one with `vpn server install PROTOCOL --runtime docker …`.",
        )
    document = {
        "version": "3.8",
        "services": services,
        "networks": {
            "default": {
                "name": network_of(home),
                "driver": "bridge",
                "driver_opts": {"com.docker.network.bridge.enable_icc": "false"},
                "labels": {"vpn-manager.home": home},
            }
        },
    }
    header = (
        f"# Written by `vpn server export-compose`: this home's Docker servers "
        f"(restart: {RESTART_POLICY}).\n# The mounted configs are the ones vpn-manager "
        f"renders; change servers with `vpn`, then export again.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
