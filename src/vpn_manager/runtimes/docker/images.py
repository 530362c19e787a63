"""What the Docker runtime must know about each engine's image, registered in one place.

Engines are named as engine.name. An engine missing here cannot run in a container."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vpn_manager.engines.singbox.settings import SingBoxSettings
from vpn_manager.engines.wireguard.settings import WireGuardSettings
from vpn_manager.errors import InvalidInput
from vpn_manager.specs import ServerSpec


@dataclass(frozen=True)
class EngineImage:
    """`binary`: the engine's program on the image's PATH; `args`: how it runs a server's
    config file; `health`: arguments to `binary` that succeed only while the engine answers
    (None: the image has no way to check, it is distroless or scratch); `setting`: the field of
    settings.DockerImages with the default image; `cuts_sessions`: whether the engine can cut a
    removed user's open connections through its API (else the container is recreated, because
    `ss -K` on the host does not reach sockets in a container's network namespace);
    `health_binary`: the program that runs `health` if not `binary`; `cap_add`, `devices` and
    `sysctls`: what the container needs beyond the default (WireGuard makes a TUN interface
    and forwards between it and the world in the container's own network namespace);
    `control_socket`: the engine serves its control API on a unix socket in the server's private
    directory, which is then mounted read-write (Xray)."""

    binary: str
    args: Callable[[Path, ServerSpec], list[str]]
    health: Callable[[ServerSpec], list[str] | None]
    setting: str
    cuts_sessions: bool
    health_binary: str | None = None
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    sysctls: Callable[[ServerSpec], dict[str, str]] = field(default=lambda spec: {})
    control_socket: bool = False


def _singbox_health(spec: ServerSpec) -> list[str]:
    # sing-box's own HTTP client against its api service inside the container: any HTTP answer
    # (the gRPC server says 404 to a plain GET) exits 0, a refused connection exits 1.
    return ["tools", "fetch", f"http://127.0.0.1:{SingBoxSettings.of(spec).api_port}/"]


def _wireguard_sysctls(spec: ServerSpec) -> dict[str, str]:
    # Forwarding between the tunnel and the container's network (its own namespace; /proc/sys
    # is read-only inside a container, so Docker sets it at creation).
    found = {"net.ipv4.ip_forward": "1"}
    if WireGuardSettings.of(spec).subnet6:
        found |= {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.all.forwarding": "1"}
    return found


IMAGES: dict[str, EngineImage] = {
    "sing-box": EngineImage(
        binary="sing-box",
        args=lambda config, spec: ["run", "-c", str(config), "--disable-color"],
        health=_singbox_health,
        setting="sing_box",
        cuts_sessions=True,
    ),
    "xray": EngineImage(
        binary="xray",
        args=lambda config, spec: ["run", "-c", str(config)],
        health=lambda spec: None,  # the official image is distroless: no tool to probe with
        setting="xray",
        cuts_sessions=False,
        control_socket=True,
    ),
    # wireguard-go in the foreground is the container's main process: the container lives as
    # long as the interface does. The engine configures it with `ip`, `wg` and `nft` run inside
    # the container (runtimes/docker/exec.py), so the image needs all four on its PATH.
    "wireguard-go": EngineImage(
        binary="wireguard-go",
        args=lambda config, spec: ["-f", WireGuardSettings.of(spec).interface],
        health=lambda spec: ["show", WireGuardSettings.of(spec).interface, "listen-port"],
        health_binary="wg",
        setting="wireguard",
        cuts_sessions=True,  # `wg set … remove`: a removed peer has no session left
        cap_add=("NET_ADMIN",),
        devices=("/dev/net/tun",),
        sysctls=_wireguard_sysctls,
    ),
}


def image_facts(engine: str) -> EngineImage:
    facts = IMAGES.get(engine)
    if facts is None:
        raise InvalidInput(
            f"The {engine} engine cannot run in Docker yet.",
            hint="Install it with --runtime native.",
        )
    return facts
