"""What a container is made with: its name, labels and network, the Engine API's create options
for a launch, the same as a docker-compose service, and the archive of files copied into a
container on a remote engine."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from vpn_manager.paths import home_id
from vpn_manager.runtimes.base import ContainerLaunch

LABEL_SERVER = "vpn-manager.server"
LABEL_ENGINE = "vpn-manager.engine"
LABEL_HOME = "vpn-manager.home"
LABEL_LAUNCH = "vpn-manager.launch"
RESTART_POLICY = "unless-stopped"
HEALTH_INTERVAL_S = 5


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
    text = json.dumps(dataclasses.asdict(launch), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
