"""VLESS+REALITY share links (`vless://…`): build one for a user, or read one back.

The format is the one Xray's share-link proposal (XTLS/Xray-core discussion #716) describes and
that v2rayN, v2rayNG, Hiddify, NekoBox, Streisand and others import:

    vless://UUID@HOST:PORT?encryption=none&security=reality&sni=SNI&fp=FP&pbk=PBK&sid=SID
        &type=tcp&flow=xtls-rprx-vision[&spx=SPX]#NAME

`to_uri()` writes the parameters always in that order (`PARAMETER_ORDER`), so the same link is
the same text every time; `flow` is left out when the link has no flow, `spx` when it has no
spider path. Every value is percent-encoded with `quote(value, safe="")` (so `/` in `spx` becomes
`%2F`), the fragment (the user's name) too; an IPv6 host is written in brackets.

`VlessRealityLink.parse()` reads such a link back, with the parameters in any order, and
`parse(link.to_uri()) == link` for every link. It accepts only what the model can say: VLESS
without VLESS encryption (`encryption=none`, or no `encryption`), REALITY security, and the raw
TCP transport (`type=tcp`; `raw`, Xray's newer name for it, is read as `tcp`; `headerType=none`
is allowed). Anything else (another scheme, `security=tls`, a missing `pbk`, a parameter we do
not know) is an `InvalidInput` that names the problem: a parameter silently dropped could change
what the link means.

Values are normalised when a link is made: the UUID, short id and DNS names to lower case, an
IPv6 address to its compressed form without brackets.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from vpn_manager.errors import InvalidInput

PARAMETER_ORDER = ("encryption", "security", "sni", "fp", "pbk", "sid", "type", "flow", "spx")
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

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PUBLIC_KEY = re.compile(r"[A-Za-z0-9_-]{43}")
_SHORT_ID = re.compile(r"(?:[0-9a-f]{2}){0,8}")
_SPIDER_X = re.compile(r"/[!-~]{0,255}")  # a path (and query) of printable ASCII, no spaces
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAME_MAX = 200
# scheme://userinfo@host:port[/][?query][#fragment]; the host is [IPv6] or has no ':'.
_URI = re.compile(
    r"(?P<userinfo>[^@/?#]*)@(?P<host>\[[^\]/?#@]*\]|[^\[\]:/?#@]*):(?P<port>[0-9]{1,5})"
    r"/?(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?",
    re.DOTALL,
)
_URI_FIELDS = {  # model field -> how the link writes it, for error messages
    "uuid": "user id",
    "host": "host",
    "port": "port",
    "sni": "sni",
    "public_key": "pbk",
    "short_id": "sid",
    "fingerprint": "fp",
    "flow": "flow",
    "transport": "type",
    "spider_x": "spx",
    "name": "name (#…)",
}
_TRANSPORTS = {"tcp": "tcp", "raw": "tcp"}
_SHAPE_HINT = (
    "A VLESS+REALITY link looks like "
    "vless://UUID@HOST:PORT?security=reality&sni=…&fp=…&pbk=…&sid=…&type=tcp#NAME."
)


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


def _check_name(value: str) -> str:
    if not value.strip() or len(value) > _NAME_MAX or _CONTROL.search(value):
        raise ValueError(f"use 1 to {_NAME_MAX} characters, not only spaces, no control characters")
    return value


UserId = Annotated[str, AfterValidator(_check_uuid)]
Host = Annotated[str, AfterValidator(_check_host)]
ServerName = Annotated[str, AfterValidator(_check_dns_name)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
PublicKey = Annotated[str, AfterValidator(_check_public_key)]
ShortId = Annotated[str, AfterValidator(_check_short_id)]
SpiderX = Annotated[str | None, AfterValidator(_check_spider_x)]
LinkName = Annotated[str, AfterValidator(_check_name)]


class VlessRealityLink(BaseModel):
    """Everything a client needs to reach one user's account on one VLESS+REALITY server."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    uuid: UserId = Field(repr=False)  # the user's credential
    host: Host  # the server: an IP address or a DNS name
    port: Port
    sni: ServerName  # the REALITY target's server name the client presents
    public_key: PublicKey  # the server's x25519 public key (`pbk`)
    short_id: ShortId  # `sid`; "" is allowed when the server lists "" among its short ids
    fingerprint: Fingerprint = "chrome"  # the uTLS fingerprint (`fp`)
    flow: Flow = "xtls-rprx-vision"
    transport: Literal["tcp"] = "tcp"  # `type`
    spider_x: SpiderX = None  # `spx`: the path a client crawls the target with; None means "/"
    name: LinkName  # the fragment: what the client shows, the user's name

    def to_uri(self) -> str:
        """The share link, parameters in `PARAMETER_ORDER`, every value percent-encoded."""
        params = {
            "encryption": "none",
            "security": "reality",
            "sni": self.sni,
            "fp": self.fingerprint,
            "pbk": self.public_key,
            "sid": self.short_id,
            "type": self.transport,
        }
        if self.flow:
            params["flow"] = self.flow
        if self.spider_x is not None:
            params["spx"] = self.spider_x
        query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"vless://{quote(self.uuid, safe='')}@{host}:{self.port}"
            f"?{query}#{quote(self.name, safe='')}"
        )

    @classmethod
    def parse(cls, uri: str) -> VlessRealityLink:
        """Read a `vless://` REALITY link, parameters in any order; InvalidInput if it is not."""
        text = uri.strip()
        scheme, separator, rest = text.partition("://")
        if not separator or scheme.lower() != "vless":
            raise InvalidInput("Not a VLESS link: it must start with vless://.", hint=_SHAPE_HINT)
        match = _URI.fullmatch(rest)
        if match is None:
            raise InvalidInput(
                "Not a valid VLESS link: expected vless://UUID@HOST:PORT?…#NAME.", hint=_SHAPE_HINT
            )
        params = _parse_query(match["query"] or "")
        if not match["fragment"]:
            raise InvalidInput(
                "The VLESS link has no name: it must end with #NAME.", hint=_SHAPE_HINT
            )
        data = _link_data(params)
        data.update(
            uuid=_unquote(match["userinfo"], "user id"),
            host=_unquote(match["host"], "host"),
            port=int(match["port"]),
            name=_unquote(match["fragment"], "name"),
        )
        return _validated(data)


def _unquote(value: str, what: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"VLESS link: the {what} is not percent-encoded UTF-8.", hint=_SHAPE_HINT
        ) from None


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _unquote(raw_key, "parameter name")
        if key in params:
            raise InvalidInput(f"VLESS link: the parameter {key!r} appears twice.")
        params[key] = _unquote(raw_value, f"value of {key!r}")
    return params


def _link_data(params: dict[str, str]) -> dict[str, Any]:
    """The model's fields from the query; InvalidInput for what is not VLESS+REALITY over TCP."""
    security = params.pop("security", None)
    if security != "reality":
        said = f"security={security}" if security is not None else "no security parameter"
        raise InvalidInput(
            f"Not a VLESS+REALITY link: it has {said}; only security=reality is supported.",
            hint=_SHAPE_HINT,
        )
    encryption = params.pop("encryption", "none")
    if encryption != "none":
        raise InvalidInput(
            f"VLESS link: encryption={encryption} is not supported; only encryption=none is.",
            hint="VLESS encryption is not used with REALITY here.",
        )
    transport = params.pop("type", "tcp")
    if transport not in _TRANSPORTS:
        raise InvalidInput(
            f"VLESS link: the transport type={transport} is not supported; only type=tcp is.",
            hint=_SHAPE_HINT,
        )
    header = params.pop("headerType", "none")
    if header != "none":
        raise InvalidInput(f"VLESS link: headerType={header} is not supported; only none is.")
    for required in ("sni", "fp", "pbk"):
        if not params.get(required):
            raise InvalidInput(
                f"VLESS link: the REALITY parameter {required!r} is missing.", hint=_SHAPE_HINT
            )
    data: dict[str, Any] = {
        "transport": _TRANSPORTS[transport],
        "sni": params.pop("sni"),
        "fingerprint": params.pop("fp"),
        "public_key": params.pop("pbk"),
        "short_id": params.pop("sid", ""),
        "flow": params.pop("flow", ""),  # no flow parameter: plain VLESS, no XTLS Vision
    }
    if "spx" in params:
        data["spider_x"] = params.pop("spx") or None  # an empty spx means the default, "/"
    if params:
        raise InvalidInput(
            f"VLESS link: unsupported parameter(s) {', '.join(sorted(params))}.",
            hint=f"The parameters understood are: {', '.join([*PARAMETER_ORDER, 'headerType'])}.",
        )
    return data


def _validated(data: dict[str, Any]) -> VlessRealityLink:
    try:
        return VlessRealityLink.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "input"
        reason = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = f" {value!r}" if isinstance(value, str | int) and field != "uuid" else ""
        raise InvalidInput(
            f"VLESS link: invalid {_URI_FIELDS.get(field, field)}{shown}: {reason}."
        ) from None
