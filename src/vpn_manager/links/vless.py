"""VLESS+REALITY share links (`vless://…`): build one for a user, or read one back.

The format is the one Xray's share-link proposal (XTLS/Xray-core discussion #716) describes and
that v2rayN, v2rayNG, Hiddify, NekoBox, Streisand and others import:

    vless://UUID@HOST:PORT?encryption=none&security=reality&sni=SNI&fp=FP&pbk=PBK&sid=SID
        &type=tcp&flow=xtls-rprx-vision[&spx=SPX]#NAME

`to_uri()` writes the parameters always in that order (`PARAMETER_ORDER`), so the same link is
the same text every time; `flow` is left out when the link has no flow, `spx` when it has no
spider path. Every value is percent-encoded with `quote(value, safe="")` (so `/` in `spx` becomes
`%2F`), the fragment (the link's label, USER@SERVER) too but for its `@`; an IPv6 host is written
in brackets.

`VlessRealityLink.parse()` reads such a link back, with the parameters in any order, and
`parse(link.to_uri()) == link` for every link. It accepts only what the model can say: VLESS
without VLESS encryption (`encryption=none`, or no `encryption`), REALITY security, and the raw
TCP transport (`type=tcp`; `raw`, Xray's newer name for it, is read as `tcp`; `headerType=none`
is allowed). Anything else (another scheme, `security=tls`, a missing `pbk`, a parameter we do
not know) is an `InvalidInput` that names the problem.

The client outbounds: Xray's uses the `vnext` form of the VLESS outbound, which every Xray
accepts, over raw TCP with REALITY; sing-box's (1.12 or newer) is a `vless` outbound with TLS,
uTLS and REALITY. sing-box has no spider path, so `spider_x` is not used there. The sing-box
build shipped for our tests is built without REALITY and uTLS: that config is for users' own
sing-box clients, and our end-to-end tests use the Xray one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    OUTBOUND_TAG,
    Fingerprint,
    Flow,
    Host,
    LinkName,
    Port,
    PublicKey,
    ServerName,
    ShortId,
    SpiderX,
    UserId,
    clash_server,
    endpoint,
    singbox_server,
)

PARAMETER_ORDER = ("encryption", "security", "sni", "fp", "pbk", "sid", "type", "flow", "spx")
KIND = uri.Kind(
    "VLESS",
    ("vless",),
    "vless://UUID@HOST:PORT?…#NAME",
    label="VLESS+REALITY",
    example="vless://UUID@HOST:PORT?security=reality&sni=…&fp=…&pbk=…&sid=…&type=tcp#NAME",
)
_FIELDS = {  # model field -> how the link writes it, for error messages
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
_SHOWN = frozenset(_FIELDS) - {"uuid"}


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
    name: LinkName  # the fragment: what the client shows, the link's label (USER@SERVER)

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
        return uri.build("vless", uri.escape(self.uuid), self.host, self.port, params, self.name)

    @classmethod
    def parse(cls, text: str) -> VlessRealityLink:
        """Read a `vless://` REALITY link, parameters in any order; InvalidInput if it is not."""
        parts = uri.split(text, KIND, userinfo_required=True)
        data = _link_data(parts.params)
        return uri.validated(
            cls,
            KIND,
            fields=_FIELDS,
            shown=_SHOWN,
            hint=False,
            uuid=uri.unquote_as(parts.userinfo or "", "user id", KIND),
            host=parts.host,
            port=parts.port,
            name=parts.name,
            **data,
        )

    def xray_outbound(self) -> dict[str, Any]:
        return {
            "tag": OUTBOUND_TAG,
            "protocol": "vless",
            "settings": {
                "vnext": [
                    {
                        "address": self.host,
                        "port": self.port,
                        "users": [{"id": self.uuid, "encryption": "none", "flow": self.flow}],
                    }
                ]
            },
            "streamSettings": {
                "network": "tcp",
                "security": "reality",
                "realitySettings": {
                    "serverName": self.sni,
                    "fingerprint": self.fingerprint,
                    "publicKey": self.public_key,
                    "shortId": self.short_id,
                    "spiderX": self.spider_x or "/",  # Xray's own default when unset
                },
            },
        }

    def singbox_outbound(self) -> dict[str, Any]:
        return {
            **singbox_server("vless", self.host, self.port),
            "uuid": self.uuid,
            "flow": self.flow,
            "tls": {
                "enabled": True,
                "server_name": self.sni,
                "utls": {"enabled": True, "fingerprint": self.fingerprint},
                "reality": {
                    "enabled": True,
                    "public_key": self.public_key,
                    "short_id": self.short_id,
                },
            },
        }

    def clash_proxy(self, name: str) -> dict[str, Any]:
        return {
            **clash_server("vless", name, self.host, self.port),
            "uuid": self.uuid,
            "network": "tcp",
            "tls": True,
            "udp": True,
            "flow": self.flow,
            "servername": self.sni,
            "reality-opts": {"public-key": self.public_key, "short-id": self.short_id},
            "client-fingerprint": self.fingerprint,
        }


def from_data(data: LinkData) -> VlessRealityLink:
    reality = data.reality
    if reality is None:
        raise ValueError(f"{data.server}: a VLESS link needs the REALITY parameters")
    return VlessRealityLink.model_validate(
        {
            "uuid": data.credential.uuid,
            "sni": reality.server_name,
            "public_key": reality.public_key,
            "short_id": reality.short_id,
            "fingerprint": reality.fingerprint,
            **endpoint(data),
        }
    )


def _link_data(params: dict[str, str]) -> dict[str, Any]:
    """The model's fields from the query; InvalidInput for what is not VLESS+REALITY over TCP."""
    security = params.pop("security", None)
    if security != "reality":
        said = f"security={security}" if security is not None else "no security parameter"
        raise InvalidInput(
            f"Not a VLESS+REALITY link: it has {said}; only security=reality is supported.",
            hint=KIND.hint,
        )
    encryption = params.pop("encryption", "none")
    if encryption != "none":
        raise InvalidInput(
            f"VLESS link: encryption={encryption} is not supported; only encryption=none is.",
            hint="VLESS encryption is not used with REALITY here.",
        )
    uri.transport_is_tcp(params, KIND, only="type=tcp", header_note="; only none is")
    for required in ("sni", "fp", "pbk"):
        if not params.get(required):
            raise InvalidInput(
                f"VLESS link: the REALITY parameter {required!r} is missing.", hint=KIND.hint
            )
    data: dict[str, Any] = {
        "transport": "tcp",
        "sni": params.pop("sni"),
        "fingerprint": params.pop("fp"),
        "public_key": params.pop("pbk"),
        "short_id": params.pop("sid", ""),
        "flow": params.pop("flow", ""),  # no flow parameter: plain VLESS, no XTLS Vision
    }
    if "spx" in params:
        data["spider_x"] = params.pop("spx") or None  # an empty spx means the default, "/"
    uri.no_more(
        params,
        KIND,
        hint=f"The parameters understood are: {', '.join([*PARAMETER_ORDER, 'headerType'])}.",
    )
    return data
