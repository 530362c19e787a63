"""What a user's subscription serves: who a token belongs to (`Subscriptions.find`, giving a
`Subscriber` with their ways into each server) and the documents made of it: the profile in the
format their app reads, Outline's JSON per Shadowsocks server, a config file per server, the
usage header. The HTTP side is `vpn_manager.web`; this is the part that knows links.

A token is looked up by its SHA-256 only (services/tokens.py): the database never sees it, and
an unknown token costs one indexed read, the same as a known one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import NotFound
from vpn_manager.kinds import UserStatus
from vpn_manager.links import client_config, share_link
from vpn_manager.links.profiles import (
    base64_list,
    clash_profile,
    outline_config,
    singbox_profile,
    userinfo,
)
from vpn_manager.services import tokens

if TYPE_CHECKING:
    from vpn_manager.services.servers import ServerService
    from vpn_manager.storage import Database

PROFILES = ("links", "sing-box", "clash")


@dataclass(frozen=True)
class Way:
    """One server of the user: its name, protocol and what its link is written from."""

    server: str
    protocol: str
    data: LinkData = field(repr=False)


@dataclass(frozen=True)
class ConfigFile:
    text: str
    suffix: str  # ".conf", ".json", ".txt"
    media_type: str


@dataclass(frozen=True)
class Subscriber:
    """Who a token belongs to, and their ways in (only an active user's are ever served)."""

    name: str
    status: str  # "active", "disabled", "expired", "over-quota"
    upload: int  # bytes this period
    download: int
    quota: int | None  # bytes a period
    expires: datetime | None
    ways: Sequence[Way] = ()

    @property
    def active(self) -> bool:
        return self.status == "active"

    def userinfo(self) -> str:
        """The `Subscription-Userinfo` header value."""
        expire = int(self.expires.timestamp()) if self.expires else None
        return userinfo(self.upload, self.download, self.quota, expire)

    def links(self) -> list[tuple[Way, str]]:
        """Each server's share link (a WireGuard peer's: its `.conf`)."""
        return [(way, share_link(way.data)) for way in self.ways]

    def profile(self, kind: str) -> str:
        """All servers in one document: "links" (base64), "sing-box" (JSON), "clash" (YAML)."""
        datas = [way.data for way in self.ways]
        if kind == "sing-box":
            return json.dumps(singbox_profile(datas), indent=2) + "\n"
        if kind == "clash":
            return clash_profile(datas)
        if kind == "links":
            return base64_list(datas)
        raise ValueError(f"unknown profile kind {kind!r}")

    def outline(self, server: str) -> str:
        """Outline's JSON for one Shadowsocks server of the user's."""
        way = self._way(server)
        if way.data.format != "shadowsocks":
            raise NotFound(f"{server} is not a Shadowsocks server.")
        return json.dumps(outline_config(way.data))

    def wireguard(self, server: str) -> str:
        """The `.conf` of one WireGuard server of the user's."""
        way = self._way(server)
        if way.data.format != "wireguard":
            raise NotFound(f"{server} is not a WireGuard server.")
        return share_link(way.data)

    def config_file(self, server: str) -> ConfigFile:
        """One server's file: a WireGuard `.conf`, a proxy's URI, else a sing-box client."""
        way = self._way(server)
        if way.data.format == "wireguard":
            return ConfigFile(share_link(way.data), ".conf", "text/plain; charset=utf-8")
        if way.data.format in ("http", "socks5"):
            return ConfigFile(share_link(way.data) + "\n", ".txt", "text/plain; charset=utf-8")
        return ConfigFile(client_config(way.data, "sing-box"), ".json", "application/json")

    def _way(self, server: str) -> Way:
        way = next((w for w in self.ways if w.server == server), None)
        if way is None:
            raise NotFound(f"No server {server!r} in this subscription.")
        return way


class Subscriptions:
    """Finds the subscriber of a token: the user, and (if they may connect) their ways in."""

    def __init__(self, db: Database, servers: Callable[[], ServerService]) -> None:
        self.db = db
        self._servers = servers

    async def find(self, token: str) -> Subscriber | None:
        async with self.db.reading() as session:
            found = await storage.users.user_by_subscription(session, tokens.digest(token))
        if found is None:
            return None
        user_id, user = found
        ways: list[Way] = []
        if user.status is UserStatus.ACTIVE and user.servers:
            ways = [Way(*way) for way in await self._servers().ways(user_id, user.name)]
        return Subscriber(
            name=user.name,
            status=user.status.value,
            upload=user.period_upload_bytes,
            download=user.period_download_bytes,
            quota=user.quota_bytes,
            expires=user.expires_at,
            ways=ways,
        )
