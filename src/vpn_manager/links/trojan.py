"""Trojan links, with the parameters v2rayN/v2rayNG and the sing-box based apps read:

    trojan://PASSWORD@HOST:PORT?security=tls&sni=SNI&type=tcp[&allowInsecure=1]#NAME

Reading also takes `type=raw`, the other common spellings of the insecure flag and a missing
`sni` when the host is a DNS name. The sing-box outbound: the password, `tls.server_name` = sni
and `tls.insecure` as the link says.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    Host,
    LinkName,
    Port,
    Secret,
    ServerName,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
)

KIND = uri.Kind(
    "Trojan", ("trojan",), "trojan://PASSWORD@HOST:PORT?security=tls&sni=…&type=tcp#NAME"
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
        uri.transport_is_tcp(params, KIND)
        data: dict[str, Any] = {
            "sni": uri.sni(params, parts.host, KIND),
            "insecure": uri.flag(params, KIND, "allowInsecure", "insecure", "allow_insecure"),
        }
        uri.no_more(params, KIND)
        password = uri.unquote_as(uri.need_userinfo(parts, KIND, "password"), "password", KIND)
        return uri.validated(
            cls, KIND, password=password, host=parts.host, port=parts.port, name=parts.name, **data
        )

    def singbox_outbound(self) -> dict[str, Any]:
        return {
            **singbox_server("trojan", self.host, self.port),
            "password": self.password,
            "tls": singbox_tls(self.sni, self.insecure),
        }

    def clash_proxy(self, name: str) -> dict[str, Any]:
        return {
            **clash_server("trojan", name, self.host, self.port),
            "password": self.password,
            "sni": self.sni,
            "skip-cert-verify": self.insecure,
            "udp": True,
        }


def from_data(data: LinkData) -> TrojanLink:
    return TrojanLink.model_validate({"password": data.credential.password, **tls_endpoint(data)})
