"""What a user's subscription serves: who a token belongs to (`Subscriptions.find`, giving a
`Subscriber` with their ways into each server) and the documents made of it: the profile in the
format their app reads, Outline's JSON per Shadowsocks server, a config file per server, the
usage header. The HTTP side is `vpn_manager.web`; this is the part that knows links.

A token is looked up by its SHA-256 only (services/tokens.py): the database never sees it, and
an unknown token costs the same indexed read of the users as a known one. On SQLite the read is
sqlite3's (storage/sqlite_subscriptions.py), so `vpn web` never loads SQLAlchemy.

`vpn web` asks for the same few subscriptions again and again (every app refreshes on its own), so
`Subscriptions` keeps the subscribers it found, with the documents made for them, by the hash:
at most `cache_size` of them (the least recently asked for go first), and only while nothing at
all was committed to the database since they were read (storage/changes.py: one cheap check per
lookup). A rotated token, a disabled user, new server keys, a revoked grant or new usage figures
are therefore in the very next response. Unknown tokens are never kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
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
from vpn_manager.storage.changes import CommitMarks
from vpn_manager.storage.sqlite_subscriptions import (
    SubscriptionFile,
    SubscriptionRecord,
    Unanswered,
)

if TYPE_CHECKING:
    from vpn_manager.services.servers import ServerService
    from vpn_manager.storage import Database

PROFILES = ("links", "sing-box", "clash")
CACHE_SIZE = 1000  # subscribers kept (each a few kB with its documents)


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
    _profiles: dict[str, str] = field(default_factory=dict, init=False, compare=False, repr=False)

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
        """All servers in one document: "links" (base64), "sing-box" (JSON), "clash" (YAML).
        Made once per kind (a Subscriber never changes)."""
        made = self._profiles.get(kind)
        if made is None:
            made = self._profiles[kind] = self._make_profile(kind)
        return made

    def _make_profile(self, kind: str) -> str:
        datas = [way.data for way in self.ways]
        if kind == "sing-box":
            return json.dumps(singbox_profile(datas), indent=2) + "\n"
        if kind == "clash":
            return clash_profile(datas)
        if kind == "links":
            return base64_list(datas)
        raise ValueError(f"unknown profile kind {kind!r}")

    def outline(self, server: str) -> str:
        """Outline's JSON for one Shadowsocks server of the user's; Conflict when the
        server's cipher is one Outline's apps lack (a 2022 one)."""
        way = self._way(server)
        if way.data.format != "shadowsocks":
            raise NotFound(f"{server} is not a Shadowsocks server.")
        return json.dumps(outline_config(way.data))

    def wireguard(self, server: str) -> ConfigFile:
        """The `.conf` of one WireGuard server of the user's."""
        if self._way(server).data.format != "wireguard":
            raise NotFound(f"{server} is not a WireGuard server.")
        return self.config_file(server)

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
    """Finds the subscriber of a token: the user, and (if they may connect) their ways in; keeps
    the last `cache_size` found while the database stays as it was (see the module's docstring).
    One Subscriptions serves a whole process: `close()` it at the end."""

    def __init__(
        self, db: Database, servers: Callable[[], ServerService], cache_size: int = CACHE_SIZE
    ) -> None:
        self.db = db
        self._servers = servers
        self._marks = CommitMarks(db)
        self._file = SubscriptionFile(db.sqlite_file) if db.sqlite_file else None
        self._mark: Hashable = object()  # what the database was when the kept ones were read
        self._kept: OrderedDict[str, Subscriber] = OrderedDict()
        self.cache_size = cache_size

    async def find(self, token: str) -> Subscriber | None:
        digest = tokens.digest(token)
        mark = await self._marks.current()  # before reading: a commit after it shows next time
        if mark != self._mark:
            self._kept.clear()
            self._mark = mark
        found = self._kept.get(digest)
        if found is not None:
            self._kept.move_to_end(digest)
            return found
        found = await self._read(digest)
        # Kept only if no lookup saw a newer database meanwhile (it would have dropped this).
        if found is not None and self._mark == mark and self.cache_size > 0:
            self._kept[digest] = found
            if len(self._kept) > self.cache_size:
                self._kept.popitem(last=False)
        return found

    @property
    def kept(self) -> int:
        """How many subscribers are kept now."""
        return len(self._kept)

    def close(self) -> None:
        self._kept.clear()
        self._marks.close()
        if self._file is not None:
            self._file.close()

    async def _read(self, digest: str) -> Subscriber | None:
        """The user and their ways in: from the SQLite file with sqlite3, else (PostgreSQL, or
        when that cannot answer) through SQLAlchemy, in one read transaction either way."""
        record: SubscriptionRecord | None
        try:
            if self._file is None:
                raise Unanswered("not SQLite")
            record = self._file.read(digest)
        except Unanswered:
            async with self.db.reading() as session:
                record = await storage.users.subscription_record(session, digest)
        if record is None:
            return None
        ways: list[Way] = []
        if record.status == UserStatus.ACTIVE.value and record.servers:
            found = self._servers().ways(record.servers, record.user_id, record.name)
            ways = [Way(*way) for way in found]
        return Subscriber(
            name=record.name,
            status=record.status,
            upload=record.upload,
            download=record.download,
            quota=record.quota,
            expires=record.expires,
            ways=ways,
        )
