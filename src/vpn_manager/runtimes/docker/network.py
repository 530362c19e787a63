"""This home's bridge network on one Docker engine: made on first use, with inter-container
traffic off, and removed once no container of the home is left."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from vpn_manager.runtimes.docker.options import LABEL_HOME, network_name

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.networks import Network


def home_network(client: DockerClient, home: str) -> Network:
    """This home's bridge network, made on first use; containers on it cannot reach each
    other (icc off), only the host and the outside."""
    name = network_name(home)
    found = client.networks.list(names=[name])
    exact = [n for n in found if n.name == name]
    if exact:
        return exact[0]
    return client.networks.create(
        name,
        driver="bridge",
        labels={LABEL_HOME: home},
        options={"com.docker.network.bridge.enable_icc": "false"},
    )


def remove_network(client: DockerClient, home: str) -> None:
    """Remove this home's network (the caller knows no container of the home is left)."""
    from docker.errors import APIError, NotFound

    for network in client.networks.list(names=[network_name(home)]):
        if network.attrs.get("Labels", {}).get(LABEL_HOME) == home:
            with contextlib.suppress(APIError, NotFound):
                network.remove()


def gateway(client: DockerClient, home: str) -> str | None:
    """The host's address on this home's network (what a container reaches the host by)."""
    for network in client.networks.list(names=[network_name(home)]):
        for pool in network.attrs.get("IPAM", {}).get("Config") or []:
            if pool.get("Gateway"):
                return str(pool["Gateway"])
    return None
