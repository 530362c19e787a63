"""VLESS share links (`vless://…`), with REALITY or TLS, over any Xray transport: build one for a
user, or read one back.

The format is the one Xray's share-link proposal (XTLS/Xray-core discussion #716) describes and
that v2rayN, v2rayNG, Hiddify, NekoBox, Streisand and others import:

    vless://UUID@HOST:PORT?encryption=none&security=reality&sni=SNI&fp=FP&pbk=PBK&sid=SID
        &type=tcp&flow=xtls-rprx-vision[&spx=SPX]#NAME
    vless://UUID@HOST:PORT?encryption=none&security=tls&sni=SNI[&fp=FP][&alpn=A,B]
        [&allowInsecure=1&pcs=SHA256]&type=ws&path=/…&host=CDN-NAME#NAME

`to_uri()` writes the parameters always in the order of `ALL_PARAMETERS` (a REALITY link over
raw TCP: `PARAMETER_ORDER`, unchanged since the first links), so the same link is the same text
every time; what a link does not have is left out. The transport's parameters (`type`, `path`,
`host`, `serviceName`, `mode`) are those of `transport.py`; `flow` (XTLS Vision) goes only with
raw TCP. A self-signed certificate is `allowInsecure=1` for the apps that read only that, and
`pcs`, its SHA-256 pin, which Xray 26 needs (it refuses to skip the check). Every value is
percent-encoded with `quote(value, safe="")` (so `/` becomes `%2F`), the fragment (the link's
label, USER@SERVER) too but for its `@`; an IPv6 host is written in brackets.

`VlessLink.parse()` reads such a link back, with the parameters in any order, and
`parse(link.to_uri()) == link` for every link. It accepts only what the model can say: VLESS
without VLESS encryption (`encryption=none`, or no `encryption`), REALITY or TLS security, the
transports tcp (or raw, Xray's newer name; `headerType=none` is allowed), ws, grpc, httpupgrade
and xhttp, and REALITY only where Xray allows it (raw, grpc, xhttp). Anything else (another
scheme, `security=none`, a missing `pbk`, a parameter we do not know) is an `InvalidInput` that
names the problem.

The client outbounds: Xray's uses the `vnext` form of the VLESS outbound, which every Xray
accepts; sing-box's (1.12 or newer) is a `vless` outbound with TLS (uTLS and REALITY for a
REALITY link) and the transport's block: sing-box has no XHTTP, and the sing-box build shipped
for our tests has neither REALITY nor uTLS nor gRPC: those configs are for users' own sing-box
clients, and our end-to-end tests use the Xray one. sing-box has no spider path, so `spider_x`
is not used there. `VlessRealityLink` is the same model under its first name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import transport, uri
from vpn_manager.links.fields import (
    OUTBOUND_TAG,
    Alpn,
    Fingerprint,
    Flow,
    Host,
    LinkName,
    PinSha256,
    Port,
    PublicKey,
    ServerName,
    ShortId,
    SpiderX,
    UserId,
    clash_server,
    endpoint,
    singbox_server,
    singbox_tls,
    xray_tls,
)
from vpn_manager.links.transport import Transport

# A REALITY link over raw TCP: the order of its parameters since the first links.
PARAMETER_ORDER = ("encryption", "security", "sni", "fp", "pbk", "sid", "type", "flow", "spx")
ALL_PARAMETERS = (
    "encryption",
    "security",
    "sni",
    "fp",
    "alpn",
    "allowInsecure",
    "pcs",
    "pbk",
    "sid",
    "type",
    "path",
    "host",
    "serviceName",
    "mode",
    "flow",
    "spx",
)
KIND = uri.Kind(
    "VLESS",
    ("vless",),
    "vless://UUID@HOST:PORT?…#NAME",
    label="VLESS",
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
    "transport": "transport",
    "spider_x": "spx",
    "pin_sha256": "pcs",
    "alpn": "alpn",
    "name": "name (#…)",
}
_SHOWN = frozenset(_FIELDS) - {"uuid"}


class VlessLink(BaseModel):
    """Everything a client needs to reach one user's account on one VLESS server: REALITY
    (`public_key`, `short_id`, `spider_x`) or TLS (`insecure`, `pin_sha256`, `alpn`), over one
    transport."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    uuid: UserId = Field(repr=False)  # the user's credential
    host: Host  # the server: an IP address or a DNS name
    port: Port
    security: Literal["reality", "tls"] = "reality"
    sni: ServerName  # REALITY: the target's name the client presents; TLS: the certificate's
    fingerprint: Fingerprint | None = None  # uTLS (`fp`); REALITY's default is chrome
    public_key: PublicKey | None = None  # REALITY: the server's x25519 public key (`pbk`)
    short_id: ShortId = ""  # REALITY: `sid`; "" when the server lists "" among its short ids
    spider_x: SpiderX = None  # REALITY: `spx`, the path a client crawls with; None means "/"
    insecure: bool = False  # TLS: a self-signed certificate (`allowInsecure=1`)
    pin_sha256: PinSha256 = None  # TLS: the certificate's SHA-256 (`pcs`)
    alpn: Alpn = None  # TLS: `alpn`, comma-separated
    flow: Flow = "xtls-rprx-vision"  # raw TCP only
    transport: Transport = Field(default_factory=Transport)
    name: LinkName  # the fragment: what the client shows, the link's label (USER@SERVER)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """REALITY's fingerprint is chrome unless said; a non-raw transport has no flow."""
        if isinstance(data, dict):
            data = dict(data)
            if data.get("security", "reality") == "reality" and data.get("fingerprint") is None:
                data["fingerprint"] = "chrome"
            network = data.get("transport", {})
            network = network.network if isinstance(network, Transport) else network
            network = network.get("network", "raw") if isinstance(network, dict) else network
            if network != "raw" and "flow" not in data:
                data["flow"] = ""
        return data

    @model_validator(mode="after")
    def _security_fits(self) -> VlessLink:
        if self.security == "reality":
            if self.public_key is None:
                raise ValueError("a REALITY link needs the server's public key (pbk)")
            if self.insecure or self.pin_sha256 or self.alpn:
                raise ValueError("a REALITY link has no allowInsecure, pcs or alpn")
            if self.transport.network not in transport.REALITY_NETWORKS:
                raise ValueError(
                    f"Xray has no REALITY over {self.transport.network}; use raw, grpc or xhttp"
                )
        else:
            if self.public_key is not None or self.short_id or self.spider_x is not None:
                raise ValueError("a TLS link has no pbk, sid or spx")
            if self.pin_sha256 and not self.insecure:
                raise ValueError("a certificate pin (pcs) goes with allowInsecure=1")
        if self.flow and not self.transport.raw:
            raise ValueError("flow (XTLS Vision) goes only with the raw TCP transport")
        return self

    def to_uri(self) -> str:
        """The share link, parameters in `ALL_PARAMETERS` order, every value percent-encoded."""
        params = {"encryption": "none", "security": self.security, "sni": self.sni}
        if self.fingerprint:
            params["fp"] = self.fingerprint
        if self.alpn:
            params["alpn"] = self.alpn
        if self.insecure:
            params["allowInsecure"] = "1"
        if self.pin_sha256:
            params["pcs"] = self.pin_sha256
        if self.public_key is not None:
            params |= {"pbk": self.public_key, "sid": self.short_id}
        params |= self.transport.params()
        if self.flow:
            params["flow"] = self.flow
        if self.spider_x is not None:
            params["spx"] = self.spider_x
        return uri.build("vless", uri.escape(self.uuid), self.host, self.port, params, self.name)

    @classmethod
    def parse(cls, text: str) -> VlessLink:
        """Read a `vless://` link, parameters in any order; InvalidInput if it is not one."""
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

    def _security_xray(self) -> dict[str, Any]:
        if self.security == "tls":
            return xray_tls(
                self.name, self.sni, self.insecure, self.pin_sha256, self.alpn, self.fingerprint
            )
        return {
            "security": "reality",
            "realitySettings": {
                "serverName": self.sni,
                "fingerprint": self.fingerprint,
                "publicKey": self.public_key,
                "shortId": self.short_id,
                "spiderX": self.spider_x or "/",  # Xray's own default when unset
            },
        }

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
            "streamSettings": self.transport.xray_stream(self._security_xray()),
        }

    def singbox_outbound(self) -> dict[str, Any]:
        block = self.transport.singbox_transport(self.name)
        if self.security == "tls":
            tls = singbox_tls(self.sni, self.insecure, self.alpn, self.fingerprint)
        else:
            tls = {
                "enabled": True,
                "server_name": self.sni,
                "utls": {"enabled": True, "fingerprint": self.fingerprint},
                "reality": {
                    "enabled": True,
                    "public_key": self.public_key,
                    "short_id": self.short_id,
                },
            }
        outbound = {
            **singbox_server("vless", self.host, self.port),
            "uuid": self.uuid,
            "flow": self.flow,
            "tls": tls,
        }
        if block is not None:
            outbound["transport"] = block
        return outbound

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = {
            **clash_server("vless", name, self.host, self.port),
            "uuid": self.uuid,
            **self.transport.clash_opts("vless", self.name),
            "tls": True,
            "udp": True,
            "flow": self.flow,
            "servername": self.sni,
        }
        if not self.flow:
            del proxy["flow"]
        if self.security == "reality":
            proxy["reality-opts"] = {"public-key": self.public_key, "short-id": self.short_id}
        else:
            proxy["skip-cert-verify"] = self.insecure
            if self.alpn:
                proxy["alpn"] = self.alpn.split(",")
        if self.fingerprint:
            proxy["client-fingerprint"] = self.fingerprint
        return proxy


VlessRealityLink = VlessLink  # its first name, when every VLESS link was REALITY over TCP


def from_data(data: LinkData) -> VlessLink:
    fields: dict[str, Any] = {
        "uuid": data.credential.uuid,
        "transport": transport.of(data.stream),
        **endpoint(data),
    }
    if data.reality is not None:
        reality = data.reality
        fields |= {
            "sni": reality.server_name,
            "public_key": reality.public_key,
            "short_id": reality.short_id,
            "fingerprint": reality.fingerprint,
        }
    elif data.tls is not None:
        fields |= {
            "security": "tls",
            "sni": data.tls.server_name,
            "insecure": data.tls.insecure,
            "pin_sha256": data.tls.cert_sha256 if data.tls.insecure else None,
        }
    else:
        raise ValueError(f"{data.server}: a VLESS link needs the REALITY or TLS parameters")
    return VlessLink.model_validate(fields)


def _link_data(params: dict[str, str]) -> dict[str, Any]:
    """The model's fields from the query; InvalidInput for what the model cannot say."""
    security = params.pop("security", None)
    if security not in ("reality", "tls"):
        said = f"security={security}" if security is not None else "no security parameter"
        raise InvalidInput(
            f"VLESS link: it has {said}; only security=reality and security=tls are supported.",
            hint=KIND.hint,
        )
    encryption = params.pop("encryption", "none")
    if encryption != "none":
        raise InvalidInput(
            f"VLESS link: encryption={encryption} is not supported; only encryption=none is.",
            hint="VLESS encryption is not used here: REALITY or TLS protects the stream.",
        )
    data: dict[str, Any] = {
        "security": security,
        "transport": transport.read(params, KIND),
        "flow": params.pop("flow", ""),  # no flow parameter: plain VLESS, no XTLS Vision
    }
    if security == "reality":
        for required in ("sni", "fp", "pbk"):
            if not params.get(required):
                raise InvalidInput(
                    f"VLESS link: the REALITY parameter {required!r} is missing.", hint=KIND.hint
                )
        data |= {
            "sni": params.pop("sni"),
            "fingerprint": params.pop("fp"),
            "public_key": params.pop("pbk"),
            "short_id": params.pop("sid", ""),
        }
        if "spx" in params:
            data["spider_x"] = params.pop("spx") or None  # an empty spx means the default, "/"
    else:
        if not params.get("sni"):
            raise InvalidInput("VLESS link: the TLS server name (sni) is missing.", hint=KIND.hint)
        data |= {
            "sni": params.pop("sni"),
            "insecure": uri.flag(params, KIND, "allowInsecure", "insecure", "allow_insecure"),
        }
        for key, field in (("fp", "fingerprint"), ("alpn", "alpn"), ("pcs", "pin_sha256")):
            if params.get(key):
                data[field] = params.pop(key)
            params.pop(key, None)
    uri.no_more(
        params,
        KIND,
        hint=f"The parameters understood are: {', '.join([*ALL_PARAMETERS, 'headerType'])}.",
    )
    return data
