"""Hysteria 2 links, the official URI scheme (v2.hysteria.network, "URI Scheme"):

    hysteria2://PASSWORD@HOST:PORT/?sni=SNI[&insecure=1][&pinSHA256=HEX]#NAME

`pinSHA256` is the SHA-256 of the server's whole certificate (DER), written as the official
client writes it, 64 lower-case hex digits (colons and upper case are accepted on input). The
official client uses the user info as written, without percent-decoding it (`u.User.String()`),
so the password is escaped only where a URI requires it: letters, digits, `-._~!$&'()*+,;=:`
stay as they are. Passwords with other characters (`/ ? @ %`, spaces, non-ASCII) only work in
clients that decode (every other client does). Reading also takes the `hy2` scheme; obfuscation
is refused.

The Xray outbound (Xray 26's `hysteria`, version 2; checked against Xray's and sing-box's
Hysteria2 servers here): the password is the transport's `auth`, TLS with ALPN h3, and a
self-signed server trusted by the link's `pinSHA256` (`pinnedPeerCertSha256`: Xray cannot skip
the check, so a link with insecure=1 and no pin has no Xray config).

The sing-box outbound: `password`, `tls.server_name`, `tls.insecure`. The link's `pinSHA256` is
NOT in it: sing-box 1.14 pins only public keys (`tls.certificate_public_key_sha256`: base64
SHA-256 of the SubjectPublicKeyInfo, checked: that one connects, the certificate's hash in hex
or base64 is refused with "unrecognized remote public key"), which cannot be derived from the
link. So the config trusts what `insecure` says, as the sing-box based apps (Hiddify, NekoBox)
do with such links: a pinned link with insecure=1 (a self-signed server) gives a client that
accepts any certificate.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    OUTBOUND_TAG,
    Host,
    LinkName,
    Port,
    Secret,
    ServerName,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
    xray_tls,
)

KIND = uri.Kind("Hysteria 2", ("hysteria2", "hy2"), "hysteria2://PASSWORD@HOST:PORT/?sni=…#NAME")
# RFC 3986 sub-delims and ':': what a URI's user info may hold unescaped.
_USERINFO_SAFE = "!$&'()*+,;=:"
_HEX_PIN = re.compile(r"[0-9a-f]{64}")


def _check_pin(value: str | None) -> str | None:
    if value is None:
        return None
    pin = value.replace(":", "").replace("-", "").lower()
    if not _HEX_PIN.fullmatch(pin):
        raise ValueError("use the SHA-256 of the certificate, 64 hex digits (colons allowed)")
    return pin


CertificatePin = Annotated[str | None, AfterValidator(_check_pin)]


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
        password = uri.escape(self.password, _USERINFO_SAFE)
        return uri.build("hysteria2", password, self.host, self.port, params, self.name, slash=True)

    @classmethod
    def parse(cls, text: str) -> Hysteria2Link:
        parts = uri.split(text, KIND)
        params = parts.params
        if "obfs" in params or "obfs-password" in params:
            raise InvalidInput(
                "Hysteria 2 link: obfuscation (obfs=…) is not supported.",
                hint="Use a link of a server without Salamander obfuscation.",
            )
        data: dict[str, Any] = {
            "sni": uri.sni(params, parts.host, KIND),
            "insecure": uri.flag(params, KIND, "insecure", "allowInsecure", "allow_insecure"),
            "pin_sha256": params.pop("pinSHA256", None) or None,
        }
        uri.no_more(params, KIND)
        # "user:pass" (Hysteria's userpass auth) is one password to the server: keep it whole.
        password = uri.unquote_as(uri.need_userinfo(parts, KIND, "password"), "password", KIND)
        return uri.validated(
            cls, KIND, password=password, host=parts.host, port=parts.port, name=parts.name, **data
        )

    def xray_outbound(self) -> dict[str, Any]:
        security = xray_tls(self.name, self.sni, self.insecure, self.pin_sha256, "h3")
        return {
            "tag": OUTBOUND_TAG,
            "protocol": "hysteria",
            "settings": {"version": 2, "address": self.host, "port": self.port},
            "streamSettings": {
                "network": "hysteria",
                **security,
                "hysteriaSettings": {"version": 2, "auth": self.password},
            },
        }

    def singbox_outbound(self) -> dict[str, Any]:  # pin_sha256 cannot be used: see above
        return {
            **singbox_server("hysteria2", self.host, self.port),
            "password": self.password,
            "tls": singbox_tls(self.sni, self.insecure),
        }

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = {
            **clash_server("hysteria2", name, self.host, self.port),
            "password": self.password,
            "sni": self.sni,
            "skip-cert-verify": self.insecure,
        }
        if self.pin_sha256 is not None:  # Mihomo pins a certificate by its SHA-256
            proxy["fingerprint"] = self.pin_sha256
        return proxy


def from_data(data: LinkData) -> Hysteria2Link:
    pin = data.tls.cert_sha256 if data.tls else None
    return Hysteria2Link.model_validate(
        {"password": data.credential.password, "pin_sha256": pin, **tls_endpoint(data)}
    )
