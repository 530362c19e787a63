"""Trojan links, with the parameters v2rayN/v2rayNG and the sing-box based apps read:

    trojan://PASSWORD@HOST:PORT?security=tls&sni=SNI[&fp=FP][&alpn=A,B]&type=tcp|ws|grpc|…
        [&path=…&host=…|&serviceName=…&mode=gun|&mode=…][&allowInsecure=1][&pcs=SHA256]#NAME

The transport's parameters are those of `transport.py` (raw TCP, WebSocket, gRPC, HTTPUpgrade,
XHTTP). `pcs` is a self-signed certificate's SHA-256 pin, which Xray clients need (Xray 26
refuses to skip the check); links carry it on every transport, raw TCP too (clients that do not
know `pcs` ignore it and go by `allowInsecure=1`). An Xray client config from a link with the
insecure flag and no pin (one made elsewhere) is refused with a sentence. Reading also
takes `type=raw`, the other common spellings of the insecure flag and a missing `sni` when the
host is a DNS name. The sing-box outbound: the password, `tls.server_name` = sni, `tls.insecure`
as the link says and the transport's block (sing-box has no XHTTP).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import transport, uri
from vpn_manager.links.fields import (
    OUTBOUND_TAG,
    Alpn,
    Fingerprint,
    Host,
    LinkName,
    PinSha256,
    Port,
    Secret,
    ServerName,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
    xray_tls,
)
from vpn_manager.links.transport import Transport

KIND = uri.Kind(
    "Trojan", ("trojan",), "trojan://PASSWORD@HOST:PORT?security=tls&sni=…&type=tcp#NAME"
)


class TrojanLink(BaseModel):
    """A Trojan account: a password, over TLS on one transport."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    password: Secret = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName  # the server name in the TLS handshake (and in the certificate)
    insecure: bool = False  # accept any certificate (a self-signed one)
    pin_sha256: PinSha256 = None  # the self-signed certificate's SHA-256 (`pcs`)
    fingerprint: Fingerprint | None = None  # uTLS (`fp`)
    alpn: Alpn = None
    transport: Transport = Field(default_factory=Transport)
    name: LinkName

    @model_validator(mode="after")
    def _pin_needs_insecure(self) -> TrojanLink:
        if self.pin_sha256 and not self.insecure:
            raise ValueError("a certificate pin (pcs) goes with allowInsecure=1")
        return self

    def to_uri(self) -> str:
        params = {"security": "tls", "sni": self.sni}
        if self.fingerprint:
            params["fp"] = self.fingerprint
        if self.alpn:
            params["alpn"] = self.alpn
        params |= self.transport.params()
        if self.insecure:
            params["allowInsecure"] = "1"
        if self.pin_sha256:
            params["pcs"] = self.pin_sha256
        return uri.build(
            "trojan", uri.escape(self.password), self.host, self.port, params, self.name
        )

    @classmethod
    def parse(cls, text: str) -> TrojanLink:
        parts = uri.split(text, KIND)
        params = parts.params
        security = params.pop("security", "tls")
        if security != "tls":
            raise InvalidInput(
                f"Trojan link: security={security} is not supported; only security=tls is.",
                hint=KIND.hint,
            )
        data: dict[str, Any] = {
            "transport": transport.read(params, KIND),
            "sni": uri.sni(params, parts.host, KIND),
            "insecure": uri.flag(params, KIND, "allowInsecure", "insecure", "allow_insecure"),
        }
        for key, field in (("fp", "fingerprint"), ("alpn", "alpn"), ("pcs", "pin_sha256")):
            if params.get(key):
                data[field] = params.pop(key)
            params.pop(key, None)
        uri.no_more(params, KIND)
        password = uri.unquote_as(uri.need_userinfo(parts, KIND, "password"), "password", KIND)
        return uri.validated(
            cls, KIND, password=password, host=parts.host, port=parts.port, name=parts.name, **data
        )

    def xray_outbound(self) -> dict[str, Any]:
        security = xray_tls(
            self.name, self.sni, self.insecure, self.pin_sha256, self.alpn, self.fingerprint
        )
        return {
            "tag": OUTBOUND_TAG,
            "protocol": "trojan",
            "settings": {
                "servers": [{"address": self.host, "port": self.port, "password": self.password}]
            },
            "streamSettings": self.transport.xray_stream(security),
        }

    def singbox_outbound(self) -> dict[str, Any]:
        outbound = {
            **singbox_server("trojan", self.host, self.port),
            "password": self.password,
            "tls": singbox_tls(self.sni, self.insecure, self.alpn, self.fingerprint),
        }
        if (block := self.transport.singbox_transport(self.name)) is not None:
            outbound["transport"] = block
        return outbound

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = {
            **clash_server("trojan", name, self.host, self.port),
            "password": self.password,
            "sni": self.sni,
            "skip-cert-verify": self.insecure,
            "udp": True,
        }
        if not self.transport.raw:
            proxy |= self.transport.clash_opts("trojan", self.name)
        if self.alpn:
            proxy["alpn"] = self.alpn.split(",")
        if self.fingerprint:
            proxy["client-fingerprint"] = self.fingerprint
        return proxy


def from_data(data: LinkData) -> TrojanLink:
    """A self-signed certificate is pinned on every transport, raw TCP too."""
    fields = {"password": data.credential.password, **tls_endpoint(data)}
    if data.stream.network != "raw":
        fields["transport"] = transport.of(data.stream)
    if data.tls is not None and data.tls.insecure:
        fields["pin_sha256"] = data.tls.cert_sha256
    return TrojanLink.model_validate(fields)
