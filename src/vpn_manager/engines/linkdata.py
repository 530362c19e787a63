"""What a user's link needs, as an engine describes it (`Engine.link_data`): the server's address,
the user's credential, the TLS or REALITY parameters, a WireGuard tunnel. Scheme-independent:
the link package (`vpn_manager.links`) writes it as a share link or a client config; engines
never write link text and never import that package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from vpn_manager.errors import Conflict

# How a link is written: one format a module in vpn_manager.links.
Format = Literal[
    "vless", "shadowsocks", "trojan", "hysteria2", "tuic", "vmess", "http", "socks5", "wireguard"
]


@dataclass(frozen=True)
class Credential:
    """The user's secret on the server, whichever parts the format takes."""

    uuid: str = field(default="", repr=False)
    password: str = field(default="", repr=False)  # for a 2022 multi-user server: SERVER:USER
    username: str = ""
    method: str = ""  # the Shadowsocks cipher


@dataclass(frozen=True)
class Tls:
    """The server's TLS, as a client checks it."""

    server_name: str
    # A self-signed certificate: a client cannot check it against a CA.
    insecure: bool = False
    # SHA-256 of the whole certificate (DER) in hex, for the formats that can pin it.
    cert_sha256: str | None = None


@dataclass(frozen=True)
class Reality:
    """The REALITY parameters a client presents (Xray's VLESS+REALITY)."""

    server_name: str  # the target's name the client presents
    public_key: str  # the server's x25519 public key
    short_id: str
    fingerprint: str = "chrome"  # the uTLS fingerprint


# How a client's stream is carried (Xray's `streamSettings.network`; "raw" is plain TCP).
Network = Literal["raw", "ws", "grpc", "httpupgrade", "xhttp"]


@dataclass(frozen=True)
class Stream:
    """The transport a client connects over (VLESS, VMess and Trojan on Xray): raw TCP, or one
    that passes through a CDN or a reverse proxy. `path`: the HTTP path (ws, httpupgrade,
    xhttp); `host`: the Host header a client sends there ("" when it sends the server's
    address); `service_name`: gRPC's service name; `mode`: XHTTP's mode (auto, packet-up,
    stream-up, stream-one; "" for auto)."""

    network: Network = "raw"
    path: str = ""
    host: str = ""
    service_name: str = ""
    mode: str = ""


@dataclass(frozen=True)
class Tunnel:
    """A WireGuard peer's side of the tunnel: what its client `.conf` says."""

    private_key: str = field(repr=False)
    addresses: tuple[str, ...]  # with their prefix: 10.13.13.2/32, fd13::2/128
    dns: str
    mtu: int
    server_public_key: str
    preshared_key: str = field(repr=False)
    allowed_ips: str
    keepalive: int


class _Server(Protocol):
    """What a link takes from a server (engines.base.ServerSpec)."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class _User(Protocol):
    """What a link takes from a user (engines.base.Client)."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class LinkData:
    """One user's way into one server, before it is written as a link."""

    format: Format
    server: str  # the server's name (for messages)
    name: str  # what the client app shows: the user's name, labelled USER@SERVER by the service
    host: str  # the address put in links
    port: int
    credential: Credential = field(default_factory=Credential)
    tls: Tls | None = None
    reality: Reality | None = None
    tunnel: Tunnel | None = None
    stream: Stream = field(default_factory=Stream)

    @classmethod
    def of(
        cls,
        format: Format,
        spec: _Server,
        client: _User,
        *,
        credential: Credential | None = None,
        tls: Tls | None = None,
        reality: Reality | None = None,
        tunnel: Tunnel | None = None,
        stream: Stream | None = None,
    ) -> LinkData:
        """`client`'s way into the server of `spec`, at the address put in links."""
        return cls(
            format=format,
            server=spec.name,
            name=client.name,
            host=spec.host,
            port=spec.port,
            credential=credential or Credential(),
            tls=tls,
            reality=reality,
            tunnel=tunnel,
            stream=stream or Stream(),
        )


def check_outline(data: LinkData) -> None:
    """Conflict, in one sentence naming the way out, when Outline's apps cannot use the
    server's cipher: they have none of the Shadowsocks 2022 ones (SIP022), and a key they
    cannot use is worse than none."""
    method = data.credential.method or ""
    if method.startswith("2022-"):
        raise Conflict(
            f"{data.server} uses {method}, a Shadowsocks 2022 cipher that Outline's apps "
            "cannot use: for Outline, install a server with `vpn server install shadowsocks "
            f"--outline` or change this one's cipher with `vpn server set {data.server} "
            "--method chacha20-ietf-poly1305`."
        )
