"""Servers: what `vpn server install` takes and what services return about a server."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vpn_manager.kinds import (
    PROXY_PROTOCOLS,
    REALITY_NETWORKS,
    STREAM_PROTOCOLS,
    TLS_PROTOCOLS,
    TRANSPORT_OPTIONS,
    UDP_PROTOCOLS,
    XHTTP_MODES,
    DesiredState,
    Network,
    Protocol,
    RuntimeKind,
    Security,
    default_security,
    is_ip,
    transport_misfit,
)
from vpn_manager.models.user import NewName, PlainText

# The kinds are defined in vpn_manager.kinds (no pydantic) and offered here with the models.
__all__ = [
    "PROXY_PROTOCOLS",
    "TLS_PROTOCOLS",
    "UDP_PROTOCOLS",
    "ContainerInfo",
    "DesiredState",
    "Network",
    "Protocol",
    "RuntimeKind",
    "Security",
    "Server",
    "ServerChange",
    "ServerChanged",
    "ServerCreate",
    "ServerStatus",
    "check_dest",
    "check_host",
    "check_hostname",
    "check_listen",
    "is_ip",
    "split_host_port",
]

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?",
    re.ASCII,
)


def check_hostname(value: str) -> str:
    """A DNS name (not an IP address): what TLS puts in SNI."""
    if is_ip(value) or not _HOSTNAME.fullmatch(value) or "." not in value.strip("."):
        raise ValueError("give a DNS name such as www.example.com")
    return value.rstrip(".").lower()


def check_host(value: str) -> str:
    """An address clients can reach: an IP literal or a DNS name."""
    value = value.strip().strip("[]")
    if is_ip(value):
        return str(ipaddress.ip_address(value))
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("give an IP address or a DNS name")
    return value.rstrip(".").lower()


def check_listen(value: str) -> str:
    if not is_ip(value):
        raise ValueError("give an IP address to listen on, such as 0.0.0.0 or 127.0.0.1")
    return str(ipaddress.ip_address(value))


def split_host_port(value: str) -> tuple[str, int]:
    """Split HOST:PORT or [IPv6]:PORT; raise ValueError with a sentence on anything else."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", value.strip())
    if match is None:
        raise ValueError("give HOST:PORT, for example www.example.com:443")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return check_host(host), port


def check_dest(value: str) -> str:
    host, port = split_host_port(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


LOCAL_DECOY = "local"  # --decoy local: the small local page (the default)


def check_decoy(value: str) -> str:
    """`local` (the server's own small page) or the HOST:PORT of an HTTP site."""
    if value.strip().lower() == LOCAL_DECOY:
        return LOCAL_DECOY
    try:
        return check_dest(value)
    except ValueError:
        raise ValueError(
            "give local (a small page of the server's own) or the HOST:PORT of an http:// "
            "site, such as www.example.com:80"
        ) from None


def _network(value: str, version: int) -> str:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not a network address: {exc}") from None
    if network.version != version:
        raise ValueError(f"give an IPv{version} network")
    if network.num_addresses < 4:
        raise ValueError("the subnet is too small for a server and a peer")
    return str(network)


def _networks(value: str) -> str:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("give one or more networks, such as 0.0.0.0/0, ::/0")
    try:
        return ", ".join(str(ipaddress.ip_network(part, strict=False)) for part in parts)
    except ValueError as exc:
        raise ValueError(f"not a network list: {exc}") from None


def _addresses(value: str) -> str:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(is_ip(part) for part in parts):
        raise ValueError("give DNS server addresses, such as 1.1.1.1, 2606:4700:4700::1111")
    return ", ".join(parts)


# Unreserved URL characters only: Xray compares the path a client asks for after
# percent-decoding it, so a path with `%` never matches, and its HTTPUpgrade client escapes
# `'()*+!$` (nobody got through either way); a `?` would start a query.
_PATH = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_DOT_SEGMENTS = {".", ".."}


def check_path(value: str) -> str:
    """An HTTP path a client asks for (WebSocket, HTTPUpgrade, XHTTP): /, then URL characters;
    no `.` or `..` segment, which a CDN or proxy in front resolves away (RFC 3986)."""
    if not _PATH.fullmatch(value):
        raise ValueError("give a path such as /ws: a / and then letters, digits or - . _ ~ /")
    if _DOT_SEGMENTS & set(value.split("/")):
        raise ValueError("give a path without . or .. segments (a proxy in front removes them)")
    return value


def check_service_name(value: str) -> str:
    """A gRPC service name: clients ask for /NAME/Tun, so `.` and `..` are refused as in paths."""
    if not _SERVICE_NAME.fullmatch(value):
        raise ValueError("give a gRPC service name of letters, digits, '.', '_' or '-'")
    if value in _DOT_SEGMENTS:
        raise ValueError(
            "give a gRPC service name other than . or .. (a proxy in front removes it)"
        )
    return value


def check_xhttp_mode(value: str) -> str:
    if value not in XHTTP_MODES:
        raise ValueError(f"give one of {', '.join(XHTTP_MODES)}")
    return value


Subnet4 = Annotated[str, AfterValidator(lambda v: _network(v, 4))]
Subnet6 = Annotated[str, AfterValidator(lambda v: _network(v, 6))]
NetList = Annotated[str, AfterValidator(_networks)]
DnsList = Annotated[str, AfterValidator(_addresses)]
Port = Annotated[int, Field(ge=1, le=65535)]
Hostname = Annotated[str, AfterValidator(check_hostname)]
Host = Annotated[str, AfterValidator(check_host)]
Listen = Annotated[str, AfterValidator(check_listen)]
Dest = Annotated[str, AfterValidator(check_dest)]
HttpPath = Annotated[str, AfterValidator(check_path)]
ServiceName = Annotated[str, AfterValidator(check_service_name)]
XhttpMode = Annotated[str, AfterValidator(check_xhttp_mode)]
Decoy = Annotated[str, AfterValidator(check_decoy)]
VMESS_RAW_NO_DECOY = (
    "VMess over raw TCP cannot have a decoy (no fallback rule tells its streams from a "
    "probe's): use --transport ws, httpupgrade, grpc or xhttp, or VLESS or Trojan"
)
STREAM_OPTIONS = ("transport", "security", "path", "service_name", "host_header", "xhttp_mode")


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


class ServerCreate(BaseModel):
    """What `vpn server install` and `vpn proxy add` ask for. Which fields apply depends on the
    protocol; the validator says which are missing or out of place."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: NewName
    protocol: Protocol
    port: Port
    listen: Listen = "0.0.0.0"
    host: Host | None = None
    sni: Hostname | None = None
    dest: Dest | None = None
    method: PlainText | None = None
    password: PlainText | None = None
    cert_file: PlainText | None = None
    key_file: PlainText | None = None
    allow_anonymous: bool = False
    subnet: Subnet4 | None = None
    subnet6: Subnet6 | None = None
    dns: DnsList | None = None
    mtu: Annotated[int, Field(ge=1280, le=9000)] | None = None
    client_allowed_ips: NetList | None = None
    runtime: RuntimeKind = RuntimeKind.NATIVE
    image: Annotated[PlainText, Field(min_length=1, max_length=255)] | None = None
    docker_host: Annotated[PlainText, Field(min_length=1, max_length=255)] | None = None
    allow_private: bool = False
    # Shadowsocks: a cipher Outline's apps speak (they have no 2022 ciphers), kept for changes.
    outline: bool = False
    # vless, trojan, vmess (Xray): how clients' streams are carried and secured, and what the
    # transport needs. Filled in by the validator (raw; REALITY for VLESS over raw, else TLS).
    transport: Network | None = None
    security: Security | None = None
    path: HttpPath | None = None
    service_name: ServiceName | None = None
    host_header: Hostname | None = None
    xhttp_mode: XhttpMode | None = None
    # A TLS server (not VMess over raw): the HTTP site (HOST:PORT) what is not a client is
    # passed on to, or `local` (the default: a small local page).
    decoy: Decoy | None = None

    @property
    def reality(self) -> bool:
        """Does this server speak REALITY (vless-reality, or another with --security reality)?"""
        return self.protocol is Protocol.VLESS_REALITY or self.security is Security.REALITY

    @model_validator(mode="after")
    def _fits_protocol(self) -> ServerCreate:
        protocol = self.protocol
        if self.outline and protocol is not Protocol.SHADOWSOCKS:
            raise ValueError("--outline applies to shadowsocks only")
        self._fits_stream()
        if self.reality and not self.sni:
            what = protocol.value
            if protocol is not Protocol.VLESS_REALITY:
                what += " with REALITY"
            raise ValueError(f"{what} needs --sni, the TLS name clients present")
        if not self.reality and self.dest:
            raise ValueError("--dest applies to REALITY servers only")
        if protocol is not Protocol.SHADOWSOCKS and (self.method or self.password):
            raise ValueError("--method and --password apply to shadowsocks only")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both --cert and --key, or neither")
        if self.cert_file and self.reality:
            raise ValueError(
                "REALITY uses no certificate: --cert and --key apply to --security tls"
            )
        if self.cert_file and protocol not in TLS_PROTOCOLS | STREAM_PROTOCOLS:
            raise ValueError(f"{protocol.value} does not use a certificate")
        if self.allow_anonymous and protocol not in PROXY_PROTOCOLS:
            raise ValueError("--allow-anonymous applies to proxies only")
        wireguard_only = (self.subnet, self.subnet6, self.dns, self.mtu, self.client_allowed_ips)
        if protocol is not Protocol.WIREGUARD and any(v is not None for v in wireguard_only):
            raise ValueError(
                "--subnet, --subnet6, --dns, --mtu and --allowed-ips apply to wireguard"
            )
        if self.runtime is not RuntimeKind.DOCKER and (self.image or self.docker_host):
            raise ValueError("--image and --docker-host apply to --runtime docker only")
        return self

    def _fits_stream(self) -> None:
        """The transport and security of a vless, trojan or vmess server: defaults filled in,
        options that do not apply and combinations Xray refuses turned down."""
        given = [name for name in STREAM_OPTIONS if getattr(self, name) is not None]
        if self.protocol not in STREAM_PROTOCOLS:
            if self.decoy is not None:
                given.append("decoy")
            if given:
                raise ValueError(
                    f"{', '.join(_option(name) for name in given)} "
                    f"appl{'ies' if len(given) == 1 else 'y'} to vless, trojan and vmess only"
                )
            return
        network = self.transport = self.transport or Network.RAW
        security = self.security = self.security or default_security(self.protocol, network)
        if security is Security.REALITY and self.protocol is not Protocol.VLESS:
            # Xray would run it, but Trojan and VMess links have no REALITY parameters that
            # clients read: no user could be handed a working link.
            raise ValueError(
                f"REALITY is for VLESS here: {self.protocol.value} links cannot carry it; use "
                "--security tls, or the vless protocol"
            )
        if security is Security.REALITY and network not in REALITY_NETWORKS:
            raise ValueError(
                f"Xray refuses REALITY over {network.value}: use --security tls, or "
                "--transport raw, grpc or xhttp"
            )
        for name in TRANSPORT_OPTIONS:
            if getattr(self, name) is not None and (why := transport_misfit(name, network)):
                raise ValueError(why)
        if self.decoy is not None:
            if security is not Security.TLS:
                raise ValueError(
                    "--decoy applies to --security tls (a REALITY server answers probes "
                    "with its target's site)"
                )
            if self.protocol is Protocol.VMESS and network is Network.RAW:
                raise ValueError(VMESS_RAW_NO_DECOY)


# The settings whose change gives every user of a server a new link: asked about first (`vpn
# server set`, the TUI's server settings).
LINK_CHANGES = {
    "port": "a new port",
    "method": "a new cipher",
    "sni": "a new SNI",
    "path": "a new path",
    "service_name": "a new gRPC service name",
    "host_header": "a new Host header",
    "xhttp_mode": "a new XHTTP mode",
}


class ServerChange(BaseModel):
    """What `vpn server set` may change: what install could set, but the protocol and what
    users' credentials are made from. None leaves a value as it is; each engine refuses the
    fields its protocol does not have."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    port: Port | None = None
    host: Host | None = None
    sni: Hostname | None = None
    dest: Dest | None = None
    method: PlainText | None = None
    cert_file: PlainText | None = None
    key_file: PlainText | None = None
    dns: DnsList | None = None
    mtu: Annotated[int, Field(ge=1280, le=9000)] | None = None
    client_allowed_ips: NetList | None = None
    allow_private: bool | None = None
    decoy: Decoy | None = None
    # vless, trojan, vmess (Xray): what the server's transport takes (ServerCreate's types).
    path: HttpPath | None = None
    service_name: ServiceName | None = None
    host_header: Hostname | None = None
    xhttp_mode: XhttpMode | None = None

    @model_validator(mode="after")
    def _pairs(self) -> ServerChange:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both --cert and --key, or neither")
        return self

    def given(self) -> dict[str, Any]:
        """The fields that were given (what changes)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def new_links(self) -> list[str]:
        """What in this change gives every user of the server a new link (the old ones stop
        working), in words: a new port, cipher, SNI, path, Host header, gRPC service name or
        XHTTP mode. A new client address may still reach the machine, and a WireGuard .conf
        with an old DNS still connects, so they are not."""
        given = self.given()
        return [words for field, words in LINK_CHANGES.items() if field in given]


class Server(BaseModel):
    """What services return about a server. Holds no private key."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str
    protocol: Protocol
    engine: str
    runtime: RuntimeKind
    image: str | None = None
    docker_host: str | None = None
    listen: str
    port: int
    host: str
    desired: DesiredState
    running: bool = False
    settings: dict[str, Any] = Field(default_factory=dict)
    users: int = 0
    created_at: datetime
    updated_at: datetime

    @property
    def sni(self) -> str | None:
        """The name a client sends: REALITY's target site, or a TLS protocol's certificate
        name (Trojan, Hysteria2, …)."""
        tls = self.settings.get("tls")
        name = self.settings.get("sni") or (
            tls.get("server_name") if isinstance(tls, dict) else None
        )
        return str(name) if name else None


class ServerChanged(BaseModel):
    """What `vpn server set` and `rotate-keys` return: the server as it is now, and the users
    whose links (or client configs) changed, who need the new ones."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    server: Server
    links_changed: list[str] = Field(default_factory=list)


class ContainerInfo(BaseModel):
    """What the Docker engine says about a server's container (docker runtime only)."""

    model_config = ConfigDict(defer_build=True)

    name: str
    id: str
    image: str
    state: str
    health: str
    restarts: int = 0
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None


class ServerStatus(BaseModel):
    """A server's observed state."""

    model_config = ConfigDict(defer_build=True)

    name: str
    desired: DesiredState
    running: bool
    healthy: bool
    engine: str = ""  # the engine the server runs on (xray, sing-box, wireguard-go)
    pid: int | None = None
    port_open: bool = False
    api_ok: bool = False
    detail: str = ""
    rss_bytes: int | None = None
    started_at: datetime | None = None
    config_file: str = ""
    log_file: str = ""
    runtime: RuntimeKind = RuntimeKind.NATIVE
    container: ContainerInfo | None = None
    # Plain sentences a person must read (a control API other local users can reach).
    warnings: list[str] = Field(default_factory=list)
