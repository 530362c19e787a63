"""TUIC v5 links, with the parameters v2rayN/v2rayNG and the sing-box based apps read:

    tuic://UUID:PASSWORD@HOST:PORT?sni=SNI&congestion_control=bbr&alpn=h3
        &udp_relay_mode=native[&allow_insecure=1]#NAME

The sing-box outbound: `uuid`, `password`, `congestion_control`, `udp_relay_mode`, and
`tls.alpn` from the link's alpn (h3).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    Host,
    LinkName,
    Port,
    Secret,
    ServerName,
    UserId,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
)

CongestionControl = Literal["bbr", "cubic", "new_reno"]
UdpRelayMode = Literal["native", "quic"]
KIND = uri.Kind("TUIC", ("tuic",), "tuic://UUID:PASSWORD@HOST:PORT?sni=…&alpn=h3#NAME")
_ALPN_ID = r"[\x21-\x2b\x2d-\x7e]{1,255}"  # one protocol id: printable ASCII but ','
_ALPN = re.compile(rf"{_ALPN_ID}(?:,{_ALPN_ID})*")


def _check_alpn(value: str) -> str:
    if not _ALPN.fullmatch(value):
        raise ValueError("use comma-separated protocol names such as h3")
    return value


Alpn = Annotated[str, AfterValidator(_check_alpn)]


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
        userinfo = f"{self.uuid}:{uri.escape(self.password)}"
        return uri.build("tuic", userinfo, self.host, self.port, params, self.name)

    @classmethod
    def parse(cls, text: str) -> TuicLink:
        parts = uri.split(text, KIND)
        params = parts.params
        data: dict[str, Any] = {
            "sni": uri.sni(params, parts.host, KIND),
            "insecure": uri.flag(params, KIND, "allow_insecure", "allowInsecure", "insecure"),
        }
        for key in ("congestion_control", "udp_relay_mode", "alpn"):
            if key in params:
                data[key] = params.pop(key)
        uri.no_more(params, KIND)
        user, password = uri.user_and_password(
            parts, KIND, "UUID and password", "tuic://UUID:PASSWORD@HOST:PORT…"
        )
        return uri.validated(
            cls,
            KIND,
            uuid=uri.unquote_as(user, "UUID", KIND),
            password=uri.unquote_as(password, "password", KIND),
            host=parts.host,
            port=parts.port,
            name=parts.name,
            **data,
        )

    def singbox_outbound(self) -> dict[str, Any]:
        return {
            **singbox_server("tuic", self.host, self.port),
            "uuid": self.uuid,
            "password": self.password,
            "congestion_control": self.congestion_control,
            "udp_relay_mode": self.udp_relay_mode,
            "tls": {**singbox_tls(self.sni, self.insecure), "alpn": self.alpn.split(",")},
        }

    def clash_proxy(self, name: str) -> dict[str, Any]:
        return {
            **clash_server("tuic", name, self.host, self.port),
            "uuid": self.uuid,
            "password": self.password,
            "sni": self.sni,
            "skip-cert-verify": self.insecure,
            "alpn": self.alpn.split(","),
            "congestion-controller": self.congestion_control,
            "udp-relay-mode": self.udp_relay_mode,
            "udp": True,
        }


def from_data(data: LinkData) -> TuicLink:
    credential = data.credential
    return TuicLink.model_validate(
        {"uuid": credential.uuid, "password": credential.password, **tls_endpoint(data)}
    )
