"""Reading and writing the URI every share link format uses (VMess's base64 JSON aside):

    scheme://[userinfo@]host:port[/][?query][#fragment]

Writing: an IPv6 host in brackets, every parameter value percent-encoded with
`quote(value, safe="")`, the fragment (the link's label, USER@SERVER) too but for the `@` a
fragment may hold as it is (RFC 3986), parameters in the order given, so the same link is the
same text every time. Reading: `split()` checks the scheme and the shape and decodes the
parts; the helpers below take parameters out of `params` one by one, and `no_more()` refuses
what is left: a parameter silently dropped could change what the link means. Every problem is
an `InvalidInput` that names the format (`Kind`) and shows what its links look like.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel, ValidationError

from vpn_manager.errors import InvalidInput

# The host is [IPv6] or has no ':'. The user info is optional (a proxy's is checked later), or
# required and without '/' (VLESS: anything else is not a VLESS link at all).
_AUTHORITY = (
    r"(?P<host>\[[^\]/?#@]*\]|[^\[\]:/?#@]*):(?P<port>[0-9]{1,5})"
    r"/?(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?"
)
_URI = re.compile(r"(?:(?P<userinfo>[^@?#]*)@)?" + _AUTHORITY, re.DOTALL)
_URI_WITH_USER = re.compile(r"(?P<userinfo>[^@/?#]*)@" + _AUTHORITY, re.DOTALL)
FALSE, TRUE = ("0", "false"), ("1", "true")  # how links write a flag

# Model field -> how a link writes it, and the fields whose bad value a message may show.
FIELDS = {
    "uuid": "UUID",
    "host": "host",
    "port": "port",
    "sni": "sni",
    "insecure": "insecure flag",
    "pin_sha256": "pinSHA256",
    "name": "name (#…)",
    "username": "user name",
}
_TRANSPORT_FIELDS = {
    "network": "transport type",
    "path": "path",
    "host": "Host header (host)",
    "service_name": "gRPC service name (serviceName)",
    "mode": "XHTTP mode",
}
SHOWN = frozenset({"host", "port", "sni", "method", "congestion_control", "udp_relay_mode", "alpn"})


@dataclass(frozen=True)
class Kind:
    """How one format is named in messages, and what its links look like."""

    name: str
    schemes: tuple[str, ...]
    shape: str
    label: str = ""  # the name in the hint, if not `name`
    example: str = ""  # the shape in the hint, if not `shape`

    @property
    def hint(self) -> str:
        return f"A {self.label or self.name} link looks like {self.example or self.shape}."

    @property
    def not_this(self) -> str:
        starts = [f"{scheme}://" for scheme in self.schemes]
        either = " or ".join([", ".join(starts[:-1]), starts[-1]] if len(starts) > 1 else starts)
        return f"Not a {self.name} link: it must start with {either}."


@dataclass(frozen=True)
class Parts:
    scheme: str
    userinfo: str | None  # still percent-encoded
    host: str
    port: int
    query: str | None
    params: dict[str, str]
    fragment: str | None  # still percent-encoded
    name: str | None  # decoded


def scheme_of(uri: str) -> str:
    return uri.strip().partition("://")[0].lower()


def split(
    uri: str, kind: Kind, *, name_in_fragment: bool = True, userinfo_required: bool = False
) -> Parts:
    """The link's parts; InvalidInput if it is not `kind`'s scheme or not shaped like a link."""
    text = uri.strip()
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in kind.schemes:
        raise InvalidInput(kind.not_this, hint=kind.hint)
    match = (_URI_WITH_USER if userinfo_required else _URI).fullmatch(rest)
    if match is None:
        raise InvalidInput(f"Not a valid {kind.name} link: expected {kind.shape}.", hint=kind.hint)
    name = None
    if name_in_fragment:
        if not match["fragment"]:
            raise InvalidInput(
                f"The {kind.name} link has no name: it must end with #NAME.", hint=kind.hint
            )
        name = unquote_as(match["fragment"], "name", kind)
    return Parts(
        scheme=scheme,
        userinfo=match["userinfo"],
        host=unquote_as(match["host"], "host", kind),
        port=int(match["port"]),
        query=match["query"],
        params=_parse_query(match["query"] or "", kind),
        fragment=match["fragment"],
        name=name,
    )


def unquote_as(value: str, what: str, kind: Kind) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{kind.name} link: the {what} is not percent-encoded UTF-8.", hint=kind.hint
        ) from None


def _parse_query(query: str, kind: Kind) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = unquote_as(raw_key, "parameter name", kind)
        if key in params:
            raise InvalidInput(f"{kind.name} link: the parameter {key!r} appears twice.")
        params[key] = unquote_as(raw_value, f"value of {key!r}", kind)
    return params


def need_userinfo(parts: Parts, kind: Kind, what: str) -> str:
    if not parts.userinfo:
        raise InvalidInput(
            f"The {kind.name} link has no {what}: expected {kind.shape}.", hint=kind.hint
        )
    return parts.userinfo


def user_and_password(parts: Parts, kind: Kind, what: str, expected: str) -> tuple[str, str]:
    """USER:PASSWORD from the user info, both still percent-encoded."""
    user, separator, password = need_userinfo(parts, kind, what).partition(":")
    if not separator or not password:
        raise InvalidInput(
            f"The {kind.name} link has no password: expected {expected}.", hint=kind.hint
        )
    return user, password


def no_more(params: dict[str, str], kind: Kind, hint: str | None = None) -> None:
    """Refuse the parameters left: the link says something we cannot honour."""
    if params:
        raise InvalidInput(
            f"{kind.name} link: unsupported parameter(s) {', '.join(sorted(params))}.",
            hint=hint or kind.hint,
        )


def flag(params: dict[str, str], kind: Kind, *names: str) -> bool:
    """The first of `names` present ("1"/"true" or "0"/"false"); every spelling is removed."""
    values = [(name, params.pop(name)) for name in names if name in params]
    if not values:
        return False
    name, value = values[0]
    if value.lower() not in TRUE + FALSE:
        raise InvalidInput(f"{kind.name} link: {name}={value} must be 1 or 0.", hint=kind.hint)
    return value.lower() in TRUE


def sni(params: dict[str, str], host: str, kind: Kind) -> str:
    """The `sni` parameter; without one, the host if it is a DNS name (what clients do)."""
    name = params.pop("sni", "")
    if name:
        return name
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return host
    raise InvalidInput(
        f"{kind.name} link: the server name (sni) is missing and the host is an IP address.",
        hint=kind.hint,
    )


def transport_is_tcp(
    params: dict[str, str], kind: Kind, *, only: str = "tcp", header_note: str = ""
) -> None:
    """Raw TCP (`type=tcp`, or `raw`, Xray's newer name for it) with `headerType=none`, or no
    such parameters; `only` and `header_note` word the refusal."""
    transport = params.pop("type", "tcp")
    if transport not in ("tcp", "raw"):
        raise InvalidInput(
            f"{kind.name} link: the transport type={transport} is not supported; only {only} is.",
            hint=kind.hint,
        )
    header = params.pop("headerType", "none")
    if header != "none":
        raise InvalidInput(f"{kind.name} link: headerType={header} is not supported{header_note}.")


def b64decode(text: str, *, urlsafe: bool) -> bytes | None:
    """Base64 (standard, and URL-safe if `urlsafe`), padded or not; None if it is not."""
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    text = text.rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_Link = TypeVar("_Link", bound=BaseModel)


def validated(
    model: type[_Link],
    kind: Kind,
    *,
    fields: Mapping[str, str] = FIELDS,
    shown: Collection[str] = SHOWN,
    hint: bool = True,
    **data: Any,
) -> _Link:
    """The link model of `data`; InvalidInput naming the first field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        reason = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        said = f" {value!r}" if field in shown and isinstance(value, str | int) else ""
        what = f"invalid {fields.get(field, field)}{said}" if field else "invalid link"
        if field == "transport":  # a field of the transport (transport.py), named as links do
            inner = str(error["loc"][1]) if len(error["loc"]) > 1 else ""
            what = f"invalid {_TRANSPORT_FIELDS.get(inner, 'transport')}"
        raise InvalidInput(
            f"{kind.name} link: {what}: {reason}.", hint=kind.hint if hint else None
        ) from None


# --- writing --------------------------------------------------------------------------------


def build(
    scheme: str,
    userinfo: str,
    host: str,
    port: int,
    params: dict[str, str] | None = None,
    name: str | None = None,
    *,
    slash: bool = False,
) -> str:
    """scheme://userinfo@host:port[/][?params][#name]; `userinfo` is written as given."""
    text = f"{scheme}://{userinfo}@{authority(host, port)}{'/' if slash else ''}"
    if params is not None:
        text += f"?{query(params)}"
    if name is not None:
        text += f"#{fragment(name)}"
    return text


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def query(params: dict[str, str]) -> str:
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())


def escape(value: str, safe: str = "") -> str:
    """Percent-encode everything but letters, digits, `-._~` and `safe`."""
    return quote(value, safe=safe)


def fragment(name: str) -> str:
    """The link's label as a fragment: `@` stays readable (USER@SERVER), the rest is escaped."""
    return escape(name, safe="@")
