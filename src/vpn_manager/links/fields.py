"""What every link format shares: the values links are made of, checked once (hosts, ports,
server names, UUIDs, names, passwords), the fields a model takes from an engine's `LinkData`
(`endpoint`, `tls_endpoint`) and the start of a sing-box client outbound. Values are normalised
when a link is made: UUIDs, short ids and DNS names to lower case, an IPv6 address to its
compressed form without brackets."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput

# uTLS fingerprints that both Xray and sing-box know, so a link works in either client.
Fingerprint = Literal[
    "chrome",
    "firefox",
    "safari",
    "ios",
    "android",
    "edge",
    "360",
    "qq",
    "random",
    "randomized",
]
# "" is plain VLESS over REALITY, without XTLS Vision.
Flow = Literal["xtls-rprx-vision", ""]

# The tag of the one outbound of every client config.
OUTBOUND_TAG = "proxy"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PUBLIC_KEY = re.compile(r"[A-Za-z0-9_-]{43}")
_SHORT_ID = re.compile(r"(?:[0-9a-f]{2}){0,8}")
_SPIDER_X = re.compile(r"/[!-~]{0,255}")  # a path (and query) of printable ASCII, no spaces
_PIN = re.compile(r"[0-9a-f]{64}")
_ALPN = re.compile(r"[!-~]{1,32}(?:,[!-~]{1,32})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAME_MAX = 200
_SECRET_MAX = 256


def _check_uuid(value: str) -> str:
    value = value.lower()
    if not _UUID.fullmatch(value):
        raise ValueError("use a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e")
    return value


def _check_dns_name(value: str) -> str:
    if not value.isascii():
        raise ValueError("write an internationalised name in its ASCII form (xn--…)")
    name = value.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("use a DNS name: dot-separated letters, digits and '-'")
    if labels[-1].isdigit():
        raise ValueError("neither an IP address nor a DNS name")
    return name


def _check_host(value: str) -> str:
    bracketed = value.startswith("[") and value.endswith("]")
    candidate = value[1:-1] if bracketed else value
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        if bracketed or ":" in candidate:
            raise ValueError("not an IPv6 address") from None
        return _check_dns_name(candidate)
    if not isinstance(address, ipaddress.IPv6Address):
        if bracketed:
            raise ValueError("only an IPv6 address goes in brackets")
    elif address.scope_id:
        raise ValueError("an IPv6 zone (%…) cannot be used in a link")
    return address.compressed


def _check_public_key(value: str) -> str:
    if _PUBLIC_KEY.fullmatch(value):
        raw = base64.urlsafe_b64decode(value + "=")
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") == value:
            return value
    raise ValueError(
        "use the REALITY public key, 43 characters of URL-safe base64 without padding "
        "(the public key or 'Password' that `xray x25519` prints)"
    )


def _check_short_id(value: str) -> str:
    value = value.lower()
    if not _SHORT_ID.fullmatch(value):
        raise ValueError("use 0 to 16 hex digits, an even number of them")
    return value


def _check_spider_x(value: str | None) -> str | None:
    if value is not None and not _SPIDER_X.fullmatch(value):
        raise ValueError("use a path that starts with '/', in printable ASCII without spaces")
    return value


def _check_pin(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower().replace(":", "")
    if not _PIN.fullmatch(value):
        raise ValueError("use the certificate's SHA-256 in hex, 64 digits")
    return value


def _check_alpn(value: str | None) -> str | None:
    if value is not None and not _ALPN.fullmatch(value):
        raise ValueError("use protocol names separated by commas, such as h2,http/1.1")
    return value


def _check_name(value: str) -> str:
    if not value.strip() or len(value) > _NAME_MAX or _CONTROL.search(value):
        raise ValueError(f"use 1 to {_NAME_MAX} characters, not only spaces, no control characters")
    return value


def _check_secret(value: str) -> str:
    if not value or len(value) > _SECRET_MAX or _CONTROL.search(value):
        raise ValueError(f"use 1 to {_SECRET_MAX} characters without control characters")
    return value


def _check_proxy_credential(value: str) -> str:
    if not value or len(value.encode()) > 255 or _CONTROL.search(value):
        raise ValueError("use 1 to 255 bytes without control characters (the SOCKS5 limit)")
    return value


UserId = Annotated[str, AfterValidator(_check_uuid)]
Host = Annotated[str, AfterValidator(_check_host)]
ServerName = Annotated[str, AfterValidator(_check_dns_name)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
PublicKey = Annotated[str, AfterValidator(_check_public_key)]
ShortId = Annotated[str, AfterValidator(_check_short_id)]
SpiderX = Annotated[str | None, AfterValidator(_check_spider_x)]
PinSha256 = Annotated[str | None, AfterValidator(_check_pin)]
Alpn = Annotated[str | None, AfterValidator(_check_alpn)]
LinkName = Annotated[str, AfterValidator(_check_name)]
Secret = Annotated[str, AfterValidator(_check_secret)]
ProxyCredential = Annotated[str, AfterValidator(_check_proxy_credential)]


def endpoint(data: LinkData) -> dict[str, Any]:
    """The fields of every link model: where the server is and what the client calls it."""
    return {"host": data.host, "port": data.port, "name": data.name}


def tls_endpoint(data: LinkData) -> dict[str, Any]:
    """`endpoint`, and the server's TLS name and whether clients can check its certificate."""
    if data.tls is None:
        raise ValueError(f"{data.server}: a {data.format} link needs the server's TLS")
    return {**endpoint(data), "sni": data.tls.server_name, "insecure": data.tls.insecure}


def singbox_server(kind: str, host: str, port: int) -> dict[str, Any]:
    """How every sing-box client outbound starts: its type, the tag "proxy" and the server."""
    return {"type": kind, "tag": OUTBOUND_TAG, "server": host, "server_port": port}


def singbox_tls(
    sni: str | None, insecure: bool, alpn: str | None = None, fingerprint: str | None = None
) -> dict[str, Any]:
    """A sing-box outbound's `tls` for a server with a certificate (not REALITY)."""
    tls: dict[str, Any] = {"enabled": True, "server_name": sni, "insecure": insecure}
    if alpn:
        tls["alpn"] = alpn.split(",")
    if fingerprint:
        tls["utls"] = {"enabled": True, "fingerprint": fingerprint}
    return tls


def xray_tls(
    server: str,
    sni: str | None,
    insecure: bool,
    pin: str | None,
    alpn: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Xray's `security: tls` and `tlsSettings` for a server with a certificate. Xray 26 refuses
    `allowInsecure` (the process exits), so a self-signed server is trusted by its pin
    (`pinnedPeerCertSha256`); without one, InvalidInput."""
    settings: dict[str, Any] = {"serverName": sni}
    if insecure:
        if pin is None:
            raise InvalidInput(
                f"{server} has a self-signed certificate and its link carries no pin (pcs), "
                "and Xray cannot skip the certificate check.",
                hint="Use --client sing-box, or give the server a real certificate.",
            )
        settings["pinnedPeerCertSha256"] = pin
    if alpn:
        settings["alpn"] = alpn.split(",")
    if fingerprint:
        settings["fingerprint"] = fingerprint
    return {"security": "tls", "tlsSettings": settings}


def clash_server(kind: str, name: str, host: str, port: int) -> dict[str, Any]:
    """How every Clash/Mihomo proxy starts: its name (unique in a profile), type and server."""
    return {"name": name, "type": kind, "server": host, "port": port}
