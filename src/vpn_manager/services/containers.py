"""Docker servers: what ServerService needs only for servers in containers, kept apart so the
service reads as one flow for both runtimes. The runtime itself (the Docker Engine API) is
runtimes/docker.py; what each engine's image needs is runtimes/images.py."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vpn_manager.engines import guard
from vpn_manager.engines.base import Engine, Files, ServerSpec
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import NotFound, VpnError
from vpn_manager.fsutil import atomic_write
from vpn_manager.kinds import UDP_PROTOCOLS, DesiredState, Protocol, RuntimeKind
from vpn_manager.paths import entry
from vpn_manager.runtimes.base import ContainerLaunch, PublishedPort

if TYPE_CHECKING:
    from vpn_manager.runtimes.docker import DockerRuntime
    from vpn_manager.services.servers import ServerService
    from vpn_manager.storage.orm import ServerRow

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


async def heal(servers: ServerService, row: ServerRow) -> bool:
    """A container that Docker restarted by itself (its restart policy, after the engine
    died) runs the engine from its config file alone: what after_start set up is gone (a
    Shadowsocks server has no users: they live in ssm-api, not in the file). Do it again,
    once per restart (recorded in the run directory, so a new `vpn serve` does not repeat
    it). Returns whether it did."""
    from vpn_manager.storage import servers as repo

    spec = repo.spec_of(row)
    mark = unhealed(servers, spec)
    if mark is None:
        return False
    record = entry(servers.paths.run_dir, spec.name, ".docker-restarts")
    engine = servers.engine(spec)
    await servers._wait_healthy(engine, spec)
    async with servers.db.reading() as session:
        clients = await repo.clients(session, row.id)
    await engine.after_start(await reached(servers, spec), clients)
    servers.paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(record, mark)
    return True


def unhealed(servers: ServerService, spec: ServerSpec) -> str | None:
    """For a running container that Docker restarted since heal() last saw it: the mark that
    heal() records; else None."""
    if spec.runtime != DOCKER:
        return None
    state = servers.runtime_of(spec).state(spec.name)
    if not state.running or state.restarts == 0:
        return None
    mark = f"{state.instance}:{state.restarts}\n"
    record = entry(servers.paths.run_dir, spec.name, ".docker-restarts")
    return None if record.exists() and record.read_text() == mark else mark


async def reconcile(servers: ServerService) -> list[str]:
    """Docker servers and containers out of step, one sentence each with the fix: containers
    labelled as this home's but unknown to the database, servers whose container is gone or
    has stopped while they should run, and Docker engines that cannot be reached."""
    from vpn_manager.storage import servers as repo

    async with servers.db.reading() as session:
        rows = [row for row, _ in await repo.list_servers(session)]
    specs = [repo.spec_of(row) for row in rows]
    wanted = {row.name for row in rows if row.desired == DesiredState.RUNNING.value}
    docker_specs = [s for s in specs if s.runtime == DOCKER]
    hosts = {s.docker_host or servers.docker_settings.host for s in docker_specs}
    known = {s.name for s in specs}
    hints: list[str] = []
    for host in sorted(hosts, key=str):
        runtime = servers.docker(host)
        try:
            found = await asyncio.to_thread(runtime.containers)
        except VpnError as exc:
            hints.append(f"{exc.message} Its servers are shown as stopped.")
            continue
        for server, (name, state) in sorted(found.items()):
            if server not in known:
                hints.append(
                    f"Container {name} ({state}) is labelled as server {server!r} of this "
                    f"home but the database does not know it: remove it with "
                    f"`docker rm -f {name}`."
                )
        for spec in docker_specs:
            if (spec.docker_host or servers.docker_settings.host) != host:
                continue
            if spec.name not in wanted:
                continue
            if spec.name not in found:
                hints.append(
                    f"Server {spec.name} should run but its container is gone: "
                    f"recreate it with `vpn server start {spec.name}`."
                )
            elif found[spec.name][1] != "running":
                hints.append(
                    f"Server {spec.name} should run but its container is "
                    f"{found[spec.name][1]}: `vpn server restart {spec.name}`."
                )
            elif unhealed(servers, spec) is not None:
                hints.append(
                    f"Docker restarted the container of {spec.name} after its engine died; "
                    "what was set up after its start (Shadowsocks users, WireGuard peers) "
                    "comes back with "
                    f"`vpn serve --once` (or a running `vpn serve`), or `vpn server restart "
                    f"{spec.name}`."
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
