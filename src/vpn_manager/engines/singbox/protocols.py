"""The protocols sing-box serves here, one row each: what its inbound is, how clients reach it,
what a user's credential is made of and how a user's link is written. The rest of the engine
(config.py, secrets.py, engine.py) and the Docker runtime read the row; adding a protocol means a
row here, its link format (vpn_manager.links) and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from vpn_manager.engines.base import Transport
from vpn_manager.engines.linkdata import Format
from vpn_manager.errors import InvalidInput

# What a user's credential is made of: a password; a UUID; both; or the user's name and a
# password (the proxies: a username is what they authenticate by and what the api service
# reports).
CredentialShape = Literal["password", "uuid", "uuid+password", "user+password"]


@dataclass(frozen=True)
class SingBoxProtocol:
    """One protocol (ServerSpec.protocol `name`) as sing-box serves it.

    `inbound`: the sing-box inbound type; `transports`: what a client connects over (a UDP-only
    protocol is QUIC: a TCP connect cannot probe it, and its TLS speaks ALPN h3); `tls`: the
    inbound needs a certificate; `credential`: what each user is given; `link`: how a user's
    link is written; `managed`: its users live in ssm-api, not in the config (Shadowsocks: they
    change live, counters are per user, the passwords are keys of the server's cipher and a
    2022 cipher gives the server a key of its own too); `basic_auth`: an HTTP proxy, whose
    passwords cannot hold ':'; `user_fields`: fixed values every user entry of the inbound has."""

    name: str
    inbound: str
    transports: tuple[Transport, ...]
    tls: bool
    credential: CredentialShape
    link: Format
    managed: bool = False
    basic_auth: bool = False
    user_fields: Mapping[str, object] = field(default_factory=dict)

    @property
    def quic(self) -> bool:
        return self.transports == ("udp",)

    @property
    def proxy(self) -> bool:
        """A plain proxy: users by name and password, anonymous access possible, no TLS."""
        return self.credential == "user+password"


ROWS = (
    SingBoxProtocol(
        "shadowsocks", "shadowsocks", ("tcp", "udp"), False, "password", "shadowsocks", managed=True
    ),
    SingBoxProtocol("trojan", "trojan", ("tcp",), True, "password", "trojan"),
    SingBoxProtocol("hysteria2", "hysteria2", ("udp",), True, "password", "hysteria2"),
    SingBoxProtocol("tuic", "tuic", ("udp",), True, "uuid+password", "tuic"),
    SingBoxProtocol("vmess", "vmess", ("tcp",), True, "uuid", "vmess", user_fields={"alterId": 0}),
    SingBoxProtocol("http", "http", ("tcp",), False, "user+password", "http", basic_auth=True),
    SingBoxProtocol("socks5", "socks", ("tcp",), False, "user+password", "socks5"),
    # A mixed proxy speaks HTTP and SOCKS on one port; its links are written as HTTP ones.
    SingBoxProtocol("mixed", "mixed", ("tcp",), False, "user+password", "http", basic_auth=True),
)
BY_NAME = {row.name: row for row in ROWS}
PROTOCOLS = tuple(BY_NAME)
PROXY_PROTOCOLS = frozenset(row.name for row in ROWS if row.proxy)


def protocol_row(protocol: str) -> SingBoxProtocol:
    """The row of `protocol` if sing-box serves it here; InvalidInput otherwise."""
    row = BY_NAME.get(protocol)
    if row is None:
        raise InvalidInput(
            f"sing-box does not serve the protocol {protocol!r}.",
            hint=f"Choose one of: {', '.join(PROTOCOLS)}.",
        )
    return row


def check_protocol(protocol: str) -> str:
    """`protocol` if sing-box serves it here; InvalidInput otherwise."""
    return protocol_row(protocol).name
