"""This home's containers on every Docker engine it uses or has used, and who owns each: a
Docker server of that name on the same engine (told by the engine's id, so two URLs of one engine
agree); what is out of step, in words with the fix; and the docker-compose.yml of the servers on
this machine's engine."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from vpn_manager.errors import NotFound, VpnError
from vpn_manager.runtimes.base import ProcessState
from vpn_manager.runtimes.docker.hosts import describe_host, hosts_used
from vpn_manager.runtimes.docker.options import RESTART_POLICY, network_name

if TYPE_CHECKING:
    from pathlib import Path

    from vpn_manager.runtimes.docker.runtime import DockerRuntime
    from vpn_manager.specs import ServerSpec


@dataclasses.dataclass
class Census:
    """This home's containers on one Docker engine, and who owns them."""

    key: str  # the engine's host as servers name it ("" for the default one)
    runtime: DockerRuntime
    found: dict[str, tuple[str, ProcessState]]
    strays: dict[str, str]  # server name → container name: no server of the database owns it

    @property
    def shown(self) -> str:
        """The engine as a person knows it (its URL, DOCKER_HOST or "the local socket")."""
        return describe_host(self.key or None)


async def census(
    docker: Callable[[str | None], DockerRuntime],
    run_dir: Path,
    servers: dict[str, str],
) -> tuple[list[Census], list[str]]:
    """`servers`: the Docker servers, name → their engine's key. Returns what each engine
    this home uses or has used holds, and the engines that cannot be reached, one sentence
    each; their containers are left alone, and so are those of servers whose engine cannot be
    reached (whether they are strays cannot be told)."""
    keys = hosts_used(run_dir) | set(servers.values())
    ids: dict[str, str | None] = {}
    seen: list[Census] = []
    unreachable: list[str] = []
    for key in sorted(keys):
        runtime = docker(key or None)
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
            if server in servers:
                owner = ids.get(servers[server])
                if owner is None or owner == ids[place.key]:
                    continue
            place.strays[server] = container
    return seen, unreachable


def out_of_step(
    seen: list[Census],
    unreachable: list[str],
    specs: list[ServerSpec],
    key_of: Callable[[ServerSpec], str | None],
    wanted: Collection[str],
    remade: Callable[[ServerSpec, ProcessState], str | None],
) -> list[str]:
    """Docker servers and containers out of step, one sentence each with the fix: containers
    labelled as this home's but owned by no server, servers (of `wanted`: those that should run)
    whose container is gone, has stopped, or must be made again (`remade` says why), and Docker
    engines that cannot be reached."""
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
        key = key_of(spec)
        found = places.get(key) if key is not None else None
        if spec.name not in wanted or found is None:
            continue
        if spec.name not in found.found:
            hints.append(
                f"Server {spec.name} should run but its container is gone: "
                f"recreate it with `vpn server start {spec.name}`."
            )
            continue
        state = found.found[spec.name][1]
        if not state.running:
            hints.append(
                f"Server {spec.name} should run but its container is stopped: "
                f"`vpn server restart {spec.name}`."
            )
            continue
        why = remade(spec, state)
        if why is not None:
            hints.append(
                f"Server {spec.name} is out of step: {why}. `vpn serve --once` (or a running "
                f"`vpn serve`) makes it again, or `vpn server restart {spec.name}`."
            )
    return hints


def compose(home: str, services: dict[str, object]) -> str:
    """A docker-compose.yml of these services (options.compose_service) on this home's
    network."""
    import yaml

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
                "name": network_name(home),
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
