"""The client apps a user's page offers a one-tap import button for: each app's URL scheme
takes the subscription URL (the app then refreshes it by itself).

Each entry: the app's name, the platforms it runs on, and how its import link is made from
the subscription URL. Apps without an import scheme (v2rayN on Windows) take the URL pasted.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote


def _q(url: str) -> str:
    return quote(url, safe="")


@dataclass(frozen=True)
class App:
    name: str
    platforms: str
    link: Callable[[str, str], str]  # (subscription URL, profile name) -> the import link


APPS: tuple[App, ...] = (
    App(
        "Hiddify",
        "Android, iOS, Windows, macOS, Linux",
        lambda u, n: f"hiddify://import/{u}#{_q(n)}",
    ),
    App(
        "sing-box",
        "Android, iOS, macOS",
        lambda u, n: f"sing-box://import-remote-profile?url={_q(u + '?format=sing-box')}#{_q(n)}",
    ),
    App("v2rayNG", "Android", lambda u, n: f"v2rayng://install-config?url={_q(u)}#{_q(n)}"),
    App(
        "Shadowrocket",
        "iOS",
        lambda u, n: (
            "sub://" + base64.urlsafe_b64encode(u.encode()).decode().rstrip("=") + f"#{_q(n)}"
        ),
    ),
    App("Streisand", "iOS, macOS", lambda u, n: f"streisand://import/{u}#{_q(n)}"),
    App("Happ", "Android, iOS, Windows, macOS", lambda u, n: f"happ://add/{u}"),
    App(
        "Clash Verge / Mihomo",
        "Windows, macOS, Linux",
        lambda u, n: f"clash://install-config?url={_q(u + '?format=clash')}&name={_q(n)}",
    ),
    App(
        "Stash",
        "iOS, macOS",
        lambda u, n: f"stash://install-config?url={_q(u + '?format=clash')}&name={_q(n)}",
    ),
)
