"""What the Docker runtime must know about each engine's image, registered in one place.

Engines are named as engine.name. An engine missing here cannot run in a container (WireGuard:
wireguard-go needs /dev/net/tun, NET_ADMIN and `wg` inside the image, and no image for it can be
built on a machine without a registry; it runs natively)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpn_manager.errors import InvalidInput


@dataclass(frozen=True)
class EngineImage:
    """`binary`: the engine's program on the image's PATH; `args`: how it runs a config file;
    `health`: arguments to `binary` that succeed only while the engine answers (None: the image
    has no way to check, it is distroless or scratch); `setting`: the field of
    settings.DockerImages with the default image; `cuts_sessions`: whether the engine can cut a
    removed user's open connections through its API (else the container is recreated, because
    `ss -K` on the host does not reach sockets in a container's network namespace)."""

    binary: str
    args: Callable[[Path], list[str]]
    health: Callable[[dict[str, Any]], list[str] | None]
    setting: str
    cuts_sessions: bool


def _singbox_health(settings: dict[str, Any]) -> list[str]:
    # sing-box's own HTTP client against its api service inside the container: any HTTP answer
    # (the gRPC server says 404 to a plain GET) exits 0, a refused connection exits 1.
    return ["tools", "fetch", f"http://127.0.0.1:{settings['api_port']}/"]


IMAGES: dict[str, EngineImage] = {
    "sing-box": EngineImage(
        binary="sing-box",
        args=lambda config: ["run", "-c", str(config), "--disable-color"],
        health=_singbox_health,
        setting="sing_box",
        cuts_sessions=True,
    ),
    "xray": EngineImage(
        binary="xray",
        args=lambda config: ["run", "-c", str(config)],
        health=lambda settings: None,  # the official image is distroless: no tool to probe with
        setting="xray",
        cuts_sessions=False,
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
