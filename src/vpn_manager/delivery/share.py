"""Share links for the protocols sing-box serves: build one for a user, or read one back.

One frozen model per link, each with `to_uri()` and `parse(uri)`; `parse(link.to_uri()) == link`
for every link (`ProxyLink`: with its name passed back in, as the URI has none). `parse_link()`
reads any of them, and `vless://` REALITY links (`VlessRealityLink`), by the scheme.

    ss://BASE64URL(METHOD:PASSWORD)@HOST:PORT#NAME                 Shadowsocks AEAD (SIP002)
    ss://METHOD:PERCENT(PASSWORD)@HOST:PORT#NAME                   Shadowsocks 2022 (SIP022)
    trojan://PASSWORD@HOST:PORT?security=tls&sni=SNI&type=tcp[&allowInsecure=1]#NAME
    hysteria2://PASSWORD@HOST:PORT/?sni=SNI[&insecure=1][&pinSHA256=HEX]#NAME
    tuic://UUID:PASSWORD@HOST:PORT?sni=SNI&congestion_control=bbr&alpn=h3
        &udp_relay_mode=native[&allow_insecure=1]#NAME
    vmess://BASE64({"v":"2","ps":NAME,"add":HOST,"port":"PORT","id":UUID,"aid":"0",…})
    http://USER:PASSWORD@HOST:PORT   socks5://USER:PASSWORD@HOST:PORT

Why these forms:
- Shadowsocks AEAD (aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305): the user info is URL-safe
  base64 WITHOUT padding, as Outline's server writes its access keys. Outline's client decodes
  URL-safe base64 without padding first and falls back to standard base64 (which must then be
  padded): padded URL-safe base64 fails in it whenever the text has a `-` or `_`.
- Shadowsocks 2022 (2022-blake3-*): SIP002 forbids base64 there; the method and the password
  are percent-encoded instead (`+ / = :` become `%2B %2F %3D %3A`). A multi-user server's client
  password is `SERVER_PSK:USER_PSK` (only the AES methods have user keys). Outline and
  shadowsocks-libev do not speak 2022; sing-box, Xray, shadowsocks-rust and their apps do.
- Trojan and TUIC: the parameters v2rayN/v2rayNG and the sing-box based apps read.
- Hysteria 2: the official URI scheme (v2.hysteria.network, "URI Scheme"): `pinSHA256` is the
  SHA-256 of the server's whole certificate (DER), written as the official client writes it,
  64 lower-case hex digits (colons and upper case are accepted on input). The official client
  uses the user info as written, without percent-decoding it (`u.User.String()`), so the
  password is escaped only where a URI requires it: letters, digits, `-._~!$&'()*+,;=:` stay as
  they are. Passwords with other characters (`/ ? @ %`, spaces, non-ASCII) only work in clients
  that decode (every other client does).
- VMess: the v2rayN JSON (keys in v2rayN's order), standard base64 with padding; `insecure` is
  "1" or "0", as v2rayN and v2rayNG write and read it.
- http/socks5: what curl and most apps take as a proxy; they carry no name, so `ProxyLink.parse`
  takes the name as an argument.

Everything else is percent-encoded with `quote(value, safe="")`: passwords, parameter values
and the fragment (the user's name); an IPv6 host is written in brackets. Parameters are always
written in the order above, so a link is the same text every time.

Reading is lenient where other panels differ harmlessly (parameter order, the `hy2` scheme,
`type=raw`, `socks5h`, the other common spellings of the insecure flag, Outline's `outline=1`,
padded or standard base64, a missing `sni` when the host is a DNS name) and strict elsewhere: a
parameter we cannot honour (a plugin, obfuscation, another transport, uTLS) is an `InvalidInput`
that names it, because dropping it silently could change what the link means.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, unquote

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vpn_manager.delivery.links import (
    Host,
    LinkName,
    Port,
    ServerName,
    UserId,
    VlessRealityLink,
)
from vpn_manager.errors import InvalidInput

# Shadowsocks 2022 methods (SIP022) and the size of their keys in bytes.
SS2022_KEY_BYTES = {
    "2022-blake3-aes-128-gcm": 16,
    "2022-blake3-aes-256-gcm": 32,
    "2022-blake3-chacha20-poly1305": 32,
}
ShadowsocksMethod = Literal[
    "aes-128-gcm",
    "aes-256-gcm",
    "chacha20-ietf-poly1305",
    "2022-blake3-aes-128-gcm",
    "2022-blake3-aes-256-gcm",
    "2022-blake3-chacha20-poly1305",
]
CongestionControl = Literal["bbr", "cubic", "new_reno"]
UdpRelayMode = Literal["native", "quic"]
ProxyScheme = Literal["http", "socks5"]

# RFC 3986 sub-delims and ':': what a URI's user info may hold unescaped (Hysteria 2 only).
_USERINFO_SAFE = "!$&'()*+,;=:"
_SECRET_MAX = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEX_PIN = re.compile(r"[0-9a-f]{64}")
_ALPN_ID = r"[\x21-\x2b\x2d-\x7e]{1,255}"  # one protocol id: printable ASCII but ','
_ALPN = re.compile(rf"{_ALPN_ID}(?:,{_ALPN_ID})*")
# scheme://[userinfo@]host:port[/][?query][#fragment]; the host is [IPv6] or has no ':'.
_URI = re.compile(
    r"(?:(?P<userinfo>[^@?#]*)@)?(?P<host>\[[^\]/?#@]*\]|[^\[\]:/?#@]*):(?P<port>[0-9]{1,5})"
    r"/?(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?",
    re.DOTALL,
)
_FALSE, _TRUE = ("0", "false"), ("1", "true")


def _check_secret(value: str) -> str:
    if not value or len(value) > _SECRET_MAX or _CONTROL.search(value):
        raise ValueError(f"use 1 to {_SECRET_MAX} characters without control characters")
    return value


def _check_proxy_credential(value: str) -> str:
    if not value or len(value.encode()) > 255 or _CONTROL.search(value):
        raise ValueError("use 1 to 255 bytes without control characters (the SOCKS5 limit)")
    return value


def _check_pin(value: str | None) -> str | None:
    if value is None:
        return None
    pin = value.replace(":", "").replace("-", "").lower()
    if not _HEX_PIN.fullmatch(pin):
        raise ValueError("use the SHA-256 of the certificate, 64 hex digits (colons allowed)")
    return pin


def _check_alpn(value: str) -> str:
    if not _ALPN.fullmatch(value):
        raise ValueError("use comma-separated protocol names such as h3")
    return value


Secret = Annotated[str, AfterValidator(_check_secret)]
ProxyCredential = Annotated[str, AfterValidator(_check_proxy_credential)]
CertificatePin = Annotated[str | None, AfterValidator(_check_pin)]
Alpn = Annotated[str, AfterValidator(_check_alpn)]


class ShadowsocksLink(BaseModel):
    """A Shadowsocks account: an AEAD or a 2022 method and its password."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    method: ShadowsocksMethod
    # AEAD: any text. 2022: the key, standard base64 of the method's key size; on a multi-user
    # server the client's password is SERVER_PSK:USER_PSK.
    password: Secret = Field(repr=False)
    host: Host
    port: Port
    name: LinkName

    @field_validator("password")
    @classmethod
    def _check_2022_keys(cls, password: str, info: ValidationInfo) -> str:
        method = info.data.get("method")
        if method not in SS2022_KEY_BYTES:
            return password
        size = SS2022_KEY_BYTES[method]
        keys = password.split(":")
        if len(keys) > 2 or (len(keys) == 2 and "aes" not in method):
            raise ValueError(
                "use one key, or SERVER_PSK:USER_PSK (multi-user needs a 2022 AES method)"
            )
        for key in keys:
            raw = _b64decode(key, urlsafe=False)
            if raw is None or len(raw) != size or base64.b64encode(raw).decode() != key:
                raise ValueError(
                    f"a {method} key is {size} bytes in standard base64 with padding "
                    f"(sing-box generate rand --base64 {size})"
                )
        return password

    def to_uri(self) -> str:
        """`ss://`: base64 user info for AEAD methods (SIP002), percent-encoded for 2022."""
        if self.method in SS2022_KEY_BYTES:
            userinfo = f"{self.method}:{quote(self.password, safe='')}"
        else:
            raw = f"{self.method}:{self.password}".encode()
            userinfo = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"ss://{userinfo}@{_authority(self.host, self.port)}#{_fragment(self.name)}"

    @classmethod
    def parse(cls, uri: str) -> ShadowsocksLink:
        """Read an `ss://` link (base64 or plain user info); InvalidInput if it is not one."""
        parts = _split(uri, _SS)
        params = parts.params
        if params.pop("outline", "1") != "1":  # Outline marks its keys; it means nothing else
            raise InvalidInput("Shadowsocks link: the parameter 'outline' must be 1.")
        if "plugin" in params:
            raise InvalidInput(
                "Shadowsocks link: plugins are not supported (it has plugin=…).",
                hint="Use a link of a server without a SIP003 plugin.",
            )
        _no_more(params, _SS)
        method, password = _ss_userinfo(_need_userinfo(parts, _SS, "method and password"))
        return _validated(
            cls,
            _SS,
            method=method.lower(),
            password=password,
            host=parts.host,
            port=parts.port,
            name=parts.name,
        )


class TrojanLink(BaseModel):
    """A Trojan account: a password, over TLS on TCP."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    password: Secret = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName  # the server name in the TLS handshake (and in the certificate)
    insecure: bool = False  # accept any certificate (a self-signed one)
    name: LinkName

    def to_uri(self) -> str:
        params = {"security": "tls", "sni": self.sni, "type": "tcp"}
        if self.insecure:
            params["allowInsecure"] = "1"
        return (
            f"trojan://{quote(self.password, safe='')}@{_authority(self.host, self.port)}"
            f"?{_query(params)}#{_fragment(self.name)}"
        )

    @classmethod
    def parse(cls, uri: str) -> TrojanLink:
        parts = _split(uri, _TROJAN)
        params = parts.params
        security = params.pop("security", "tls")
        if security != "tls":
            raise InvalidInput(
                f"Trojan link: security={security} is not supported; only security=tls is.",
                hint=_TROJAN.hint,
            )
        _transport_is_tcp(params, _TROJAN)
        data = {
            "sni": _sni(params, parts.host, _TROJAN),
            "insecure": _flag(params, _TROJAN, "allowInsecure", "insecure", "allow_insecure"),
        }
        _no_more(params, _TROJAN)
        password = _unquote(_need_userinfo(parts, _TROJAN, "password"), "password", _TROJAN)
        return _validated(
            cls,
            _TROJAN,
            password=password,
            host=parts.host,
            port=parts.port,
            name=parts.name,
            **data,
        )


class Hysteria2Link(BaseModel):
    """A Hysteria 2 account: a password, over QUIC (TLS 1.3)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    password: Secret = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName
    insecure: bool = False
    # SHA-256 of the server's certificate (DER) as 64 lower-case hex digits: the client trusts
    # the certificate with this hash. Typical for a self-signed certificate, with insecure.
    pin_sha256: CertificatePin = None
    name: LinkName

    def to_uri(self) -> str:
        params = {"sni": self.sni}
        if self.insecure:
            params["insecure"] = "1"
        if self.pin_sha256 is not None:
            params["pinSHA256"] = self.pin_sha256
        return (
            f"hysteria2://{quote(self.password, safe=_USERINFO_SAFE)}"
            f"@{_authority(self.host, self.port)}/?{_query(params)}#{_fragment(self.name)}"
        )

    @classmethod
    def parse(cls, uri: str) -> Hysteria2Link:
        parts = _split(uri, _HY2)
        params = parts.params
        if "obfs" in params or "obfs-password" in params:
            raise InvalidInput(
                "Hysteria 2 link: obfuscation (obfs=…) is not supported.",
                hint="Use a link of a server without Salamander obfuscation.",
            )
        data = {
            "sni": _sni(params, parts.host, _HY2),
            "insecure": _flag(params, _HY2, "insecure", "allowInsecure", "allow_insecure"),
            "pin_sha256": params.pop("pinSHA256", None) or None,
        }
        _no_more(params, _HY2)
        # "user:pass" (Hysteria's userpass auth) is one password to the server: keep it whole.
        password = _unquote(_need_userinfo(parts, _HY2, "password"), "password", _HY2)
        return _validated(
            cls, _HY2, password=password, host=parts.host, port=parts.port, name=parts.name, **data
        )


class TuicLink(BaseModel):
    """A TUIC v5 account: a UUID and a password, over QUIC (TLS 1.3)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    uuid: UserId = Field(repr=False)
    password: Secret = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName
    insecure: bool = False
    congestion_control: CongestionControl = "bbr"
    udp_relay_mode: UdpRelayMode = "native"
    alpn: Alpn = "h3"  # comma-separated, as in the link
    name: LinkName

    def to_uri(self) -> str:
        params = {
            "sni": self.sni,
            "congestion_control": self.congestion_control,
            "alpn": self.alpn,
            "udp_relay_mode": self.udp_relay_mode,
        }
        if self.insecure:
            params["allow_insecure"] = "1"
        return (
            f"tuic://{self.uuid}:{quote(self.password, safe='')}"
            f"@{_authority(self.host, self.port)}?{_query(params)}#{_fragment(self.name)}"
        )

    @classmethod
    def parse(cls, uri: str) -> TuicLink:
        parts = _split(uri, _TUIC)
        params = parts.params
        data: dict[str, Any] = {
            "sni": _sni(params, parts.host, _TUIC),
            "insecure": _flag(params, _TUIC, "allow_insecure", "allowInsecure", "insecure"),
        }
        for key in ("congestion_control", "udp_relay_mode", "alpn"):
            if key in params:
                data[key] = params.pop(key)
        _no_more(params, _TUIC)
        user, separator, password = _need_userinfo(parts, _TUIC, "UUID and password").partition(":")
        if not separator or not password:
            raise InvalidInput(
                "The TUIC link has no password: expected tuic://UUID:PASSWORD@HOST:PORT….",
                hint=_TUIC.hint,
            )
        return _validated(
            cls,
            _TUIC,
            uuid=_unquote(user, "UUID", _TUIC),
            password=_unquote(password, "password", _TUIC),
            host=parts.host,
            port=parts.port,
            name=parts.name,
            **data,
        )


class VmessLink(BaseModel):
    """A VMess account: a UUID (alterId 0, security auto) over TCP, with or without TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    uuid: UserId = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName | None = None  # required with TLS, absent without
    tls: bool = True
    insecure: bool = False
    name: LinkName

    @model_validator(mode="after")
    def _tls_settings_need_tls(self) -> VmessLink:
        if self.tls and self.sni is None:
            raise ValueError("a VMess link with TLS needs the server name (sni)")
        if not self.tls and (self.sni is not None or self.insecure):
            raise ValueError("a VMess link without TLS has no sni and no insecure")
        return self

    def to_uri(self) -> str:
        """`vmess://` and the v2rayN JSON in standard base64 with padding."""
        document = {
            "v": "2",
            "ps": self.name,
            "add": self.host,
            "port": str(self.port),
            "id": self.uuid,
            "aid": "0",
            "scy": "auto",
            "net": "tcp",
            "type": "none",
            "host": "",
            "path": "",
            "tls": "tls" if self.tls else "",
            "sni": self.sni or "",
            "alpn": "",
            "fp": "",
            "insecure": "1" if self.insecure else "0",
        }
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        return "vmess://" + base64.b64encode(text.encode()).decode()

    @classmethod
    def parse(cls, uri: str) -> VmessLink:
        """Read a v2rayN `vmess://` link (standard or URL-safe base64, padded or not)."""
        scheme, separator, payload = uri.strip().partition("://")
        if not separator or scheme.lower() != "vmess":
            raise InvalidInput(_VMESS.not_this, hint=_VMESS.hint)
        raw = _b64decode(payload, urlsafe=True)
        if raw is None:
            raise InvalidInput(
                "VMess link: the text after vmess:// is not base64.", hint=_VMESS.hint
            )
        try:
            document = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            document = None
        if not isinstance(document, dict):
            raise InvalidInput(
                "VMess link: the base64 text is not a JSON object.", hint=_VMESS.hint
            )
        return _validated(cls, _VMESS, **_vmess_data(document))


class ProxyLink(BaseModel):
    """An HTTP or SOCKS5 proxy account: a user name and a password."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    scheme: ProxyScheme
    username: ProxyCredential
    password: ProxyCredential = Field(repr=False)
    host: Host
    port: Port
    name: LinkName | None = None  # not part of the URI

    @field_validator("username")
    @classmethod
    def _no_colon_in_username(cls, username: str) -> str:
        if ":" in username:
            raise ValueError("HTTP Basic authentication cannot carry a ':' in the user name")
        return username

    def to_uri(self) -> str:
        return (
            f"{self.scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}"
            f"@{_authority(self.host, self.port)}"
        )

    @classmethod
    def parse(cls, uri: str, name: str | None = None) -> ProxyLink:
        """Read `http://USER:PASS@HOST:PORT` or `socks5://…` (also `socks5h://`); the URI has no
        name, so give it here if the link should have one."""
        parts = _split(uri, _PROXY, name_in_fragment=False)
        if parts.query is not None or parts.fragment is not None:
            raise InvalidInput(
                "A proxy link has only user, password, host and port: no ?… and no #….",
                hint=_PROXY.hint,
            )
        user, separator, password = _need_userinfo(parts, _PROXY, "user and password").partition(
            ":"
        )
        if not separator or not password:
            raise InvalidInput(
                "The proxy link has no password: expected SCHEME://USER:PASSWORD@HOST:PORT.",
                hint=_PROXY.hint,
            )
        return _validated(
            cls,
            _PROXY,
            scheme=_PROXY_SCHEMES[parts.scheme],
            username=_unquote(user, "user name", _PROXY),
            password=_unquote(password, "password", _PROXY),
            host=parts.host,
            port=parts.port,
            name=name,
        )


ShareLink = ShadowsocksLink | TrojanLink | Hysteria2Link | TuicLink | VmessLink | ProxyLink
AnyLink = ShareLink | VlessRealityLink


def parse_link(uri: str) -> AnyLink:
    """Read any link we make, by its scheme (a proxy URI gets no name)."""
    scheme = uri.strip().partition("://")[0].lower()
    if scheme == "vless":
        return VlessRealityLink.parse(uri)
    for kind, model in _MODELS:
        if scheme in kind.schemes:
            link: AnyLink = model.parse(uri)
            return link
    known = ", ".join(["vless", *(s for kind, _ in _MODELS for s in kind.schemes)])
    raise InvalidInput(
        "Not a share link we can read: it must start with one of the known schemes.",
        hint=f"The schemes understood are: {known}.",
    )


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """How one kind of link is named in messages, and what it looks like."""

    name: str
    schemes: tuple[str, ...]
    shape: str

    @property
    def hint(self) -> str:
        return f"A {self.name} link looks like {self.shape}."

    @property
    def not_this(self) -> str:
        starts = [f"{scheme}://" for scheme in self.schemes]
        either = " or ".join([", ".join(starts[:-1]), starts[-1]] if len(starts) > 1 else starts)
        return f"Not a {self.name} link: it must start with {either}."


_SS = _Kind("Shadowsocks", ("ss",), "ss://USERINFO@HOST:PORT#NAME")
_TROJAN = _Kind(
    "Trojan", ("trojan",), "trojan://PASSWORD@HOST:PORT?security=tls&sni=…&type=tcp#NAME"
)
_HY2 = _Kind("Hysteria 2", ("hysteria2", "hy2"), "hysteria2://PASSWORD@HOST:PORT/?sni=…#NAME")
_TUIC = _Kind("TUIC", ("tuic",), "tuic://UUID:PASSWORD@HOST:PORT?sni=…&alpn=h3#NAME")
_VMESS = _Kind("VMess", ("vmess",), "vmess://BASE64-OF-V2RAYN-JSON")
_PROXY = _Kind("proxy", ("http", "socks5", "socks5h"), "socks5://USER:PASSWORD@HOST:PORT")
_PROXY_SCHEMES: dict[str, ProxyScheme] = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}
_MODELS: tuple[tuple[_Kind, type[ShareLink]], ...] = (
    (_SS, ShadowsocksLink),
    (_TROJAN, TrojanLink),
    (_HY2, Hysteria2Link),
    (_TUIC, TuicLink),
    (_VMESS, VmessLink),
    (_PROXY, ProxyLink),
)
_FIELDS = {  # model field -> how the link writes it, for error messages
    "uuid": "UUID",
    "host": "host",
    "port": "port",
    "sni": "sni",
    "insecure": "insecure flag",
    "pin_sha256": "pinSHA256",
    "name": "name (#…)",
    "username": "user name",
}
_SHOWN = {"host", "port", "sni", "method", "congestion_control", "udp_relay_mode", "alpn"}
_VMESS_KEYS = ("v", "ps", "add", "port", "id", "aid", "scy", "net", "type", "host", "path")
_VMESS_TLS_KEYS = ("tls", "sni", "alpn", "fp", "insecure", "allowInsecure")
# Keys some apps add; only their empty values are accepted (they would change the connection).
_VMESS_EMPTY_KEYS = ("cs", "vcn", "pcs", "class")


@dataclass(frozen=True)
class _Parts:
    scheme: str
    userinfo: str | None  # still percent-encoded
    host: str
    port: int
    query: str | None
    params: dict[str, str]
    fragment: str | None  # still percent-encoded
    name: str | None  # decoded


def _split(uri: str, kind: _Kind, *, name_in_fragment: bool = True) -> _Parts:
    text = uri.strip()
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in kind.schemes:
        raise InvalidInput(kind.not_this, hint=kind.hint)
    match = _URI.fullmatch(rest)
    if match is None:
        raise InvalidInput(f"Not a valid {kind.name} link: expected {kind.shape}.", hint=kind.hint)
    name = None
    if name_in_fragment:
        if not match["fragment"]:
            raise InvalidInput(
                f"The {kind.name} link has no name: it must end with #NAME.", hint=kind.hint
            )
        name = _unquote(match["fragment"], "name", kind)
    return _Parts(
        scheme=scheme,
        userinfo=match["userinfo"],
        host=_unquote(match["host"], "host", kind),
        port=int(match["port"]),
        query=match["query"],
        params=_parse_query(match["query"] or "", kind),
        fragment=match["fragment"],
        name=name,
    )


def _unquote(value: str, what: str, kind: _Kind) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{kind.name} link: the {what} is not percent-encoded UTF-8.", hint=kind.hint
        ) from None


def _parse_query(query: str, kind: _Kind) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _unquote(raw_key, "parameter name", kind)
        if key in params:
            raise InvalidInput(f"{kind.name} link: the parameter {key!r} appears twice.")
        params[key] = _unquote(raw_value, f"value of {key!r}", kind)
    return params


def _need_userinfo(parts: _Parts, kind: _Kind, what: str) -> str:
    if not parts.userinfo:
        raise InvalidInput(
            f"The {kind.name} link has no {what}: expected {kind.shape}.", hint=kind.hint
        )
    return parts.userinfo


def _no_more(params: dict[str, str], kind: _Kind) -> None:
    if params:
        raise InvalidInput(
            f"{kind.name} link: unsupported parameter(s) {', '.join(sorted(params))}.",
            hint=kind.hint,
        )


def _flag(params: dict[str, str], kind: _Kind, *names: str) -> bool:
    """The first of `names` present ("1"/"true" or "0"/"false"); every spelling is removed."""
    values = [(name, params.pop(name)) for name in names if name in params]
    if not values:
        return False
    name, value = values[0]
    if value.lower() not in _TRUE + _FALSE:
        raise InvalidInput(f"{kind.name} link: {name}={value} must be 1 or 0.", hint=kind.hint)
    return value.lower() in _TRUE


def _sni(params: dict[str, str], host: str, kind: _Kind) -> str:
    """The `sni` parameter; without one, the host if it is a DNS name (what clients do)."""
    sni = params.pop("sni", "")
    if sni:
        return sni
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return host
    raise InvalidInput(
        f"{kind.name} link: the server name (sni) is missing and the host is an IP address.",
        hint=kind.hint,
    )


def _transport_is_tcp(params: dict[str, str], kind: _Kind) -> None:
    transport = params.pop("type", "tcp")
    if transport not in ("tcp", "raw"):
        raise InvalidInput(
            f"{kind.name} link: the transport type={transport} is not supported; only tcp is.",
            hint=kind.hint,
        )
    header = params.pop("headerType", "none")
    if header != "none":
        raise InvalidInput(f"{kind.name} link: headerType={header} is not supported.")


def _b64decode(text: str, *, urlsafe: bool) -> bytes | None:
    """Base64 (standard, and URL-safe if `urlsafe`), padded or not; None if it is not."""
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    text = text.rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _ss_userinfo(userinfo: str) -> tuple[str, str]:
    """(method, password) from SIP002 user info: METHOD:PASSWORD percent-encoded, or base64."""
    if ":" in userinfo:
        method, _, password = userinfo.partition(":")
        return _unquote(method, "method", _SS), _unquote(password, "password", _SS)
    text = _unquote(userinfo, "user info", _SS)
    if ":" in text:  # the colon itself was percent-encoded
        method, _, password = text.partition(":")
        return method, password
    raw = _b64decode(text, urlsafe=True)
    if raw is None:
        raise InvalidInput(
            "Shadowsocks link: the user info is neither METHOD:PASSWORD nor base64 of it.",
            hint=_SS.hint,
        )
    try:
        method, separator, password = raw.decode().partition(":")
    except UnicodeDecodeError:
        separator = ""
    if not separator or not password:
        raise InvalidInput(
            "Shadowsocks link: the base64 user info does not decode to METHOD:PASSWORD.",
            hint=_SS.hint,
        )
    return method, password


def _vmess_data(document: dict[str, Any]) -> dict[str, Any]:
    """The model's fields from the v2rayN JSON; InvalidInput for what the model cannot say."""

    def text(key: str, default: str = "") -> str:
        value = document.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInput(f"VMess link: {key!r} must be a string, not {value!r}.")
        return str(value)

    for key, allowed in (
        ("v", ("2",)),
        ("aid", ("0", "")),
        ("scy", ("auto", "")),
        ("net", ("tcp", "raw", "")),
        ("type", ("none", "")),
        ("host", ("",)),
        ("path", ("",)),
        ("alpn", ("",)),
        ("fp", ("",)),
        *((key, ("",)) for key in _VMESS_EMPTY_KEYS),
    ):
        value = text(key, allowed[0])
        if value not in allowed:
            raise InvalidInput(
                f"VMess link: {key}={value!r} is not supported; only {allowed[0]!r} is.",
                hint="Links with other transports, ciphers, alterId or uTLS cannot be used here.",
            )
    tls = text("tls")
    if tls not in ("tls", "", "none"):
        raise InvalidInput(f"VMess link: tls={tls!r} is not supported; use 'tls' or ''.")
    insecure: Any = False
    for key in ("insecure", "allowInsecure"):
        if key in document:
            value = document.pop(key)
            if isinstance(value, bool) or value in (0, 1):
                insecure = bool(value)
            elif str(value).lower() in _TRUE + _FALSE + ("",):
                insecure = str(value).lower() in _TRUE
            else:
                raise InvalidInput(f"VMess link: {key}={value!r} must be 1 or 0.")
    host, sni = text("add"), text("sni")
    data: dict[str, Any] = {
        "uuid": text("id"),
        "host": host,
        "port": int(port) if (port := text("port")).isdigit() else port,
        "tls": tls == "tls",
        "insecure": insecure,
        "name": text("ps"),
    }
    if tls == "tls":
        data["sni"] = sni or _sni({}, host, _VMESS)
    elif sni:
        data["sni"] = sni  # refused by the model: a server name without TLS
    if document:
        raise InvalidInput(
            f"VMess link: unsupported key(s) {', '.join(sorted(document))}.",
            hint=f"The keys understood are: {', '.join(_VMESS_KEYS + _VMESS_TLS_KEYS)}.",
        )
    return data


_Link = TypeVar("_Link", bound=BaseModel)


def _validated(model: type[_Link], kind: _Kind, **data: Any) -> _Link:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        reason = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = f" {value!r}" if field in _SHOWN and isinstance(value, str | int) else ""
        what = f"invalid {_FIELDS.get(field, field)}{shown}" if field else "invalid link"
        raise InvalidInput(f"{kind.name} link: {what}: {reason}.", hint=kind.hint) from None


# --- writing --------------------------------------------------------------------------------


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())


def _fragment(name: str) -> str:
    return quote(name, safe="")
