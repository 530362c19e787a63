"""VMess links: `vmess://` and the v2rayN JSON (keys in v2rayN's order), standard base64 with
padding; `insecure` is "1" or "0", as v2rayN and v2rayNG write and read it.

    vmess://BASE64({"v":"2","ps":NAME,"add":HOST,"port":"PORT","id":UUID,"aid":"0",…})

Reading takes standard or URL-safe base64, padded or not, and refuses what the model cannot say
(another transport or cipher, an alterId, uTLS). The sing-box outbound is `security: auto` with
`alter_id: 0`, and with TLS `tls.server_name` = sni and `tls.insecure` as the link says.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    Host,
    LinkName,
    Port,
    ServerName,
    UserId,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
)

KIND = uri.Kind("VMess", ("vmess",), "vmess://BASE64-OF-V2RAYN-JSON")
_KEYS = ("v", "ps", "add", "port", "id", "aid", "scy", "net", "type", "host", "path")
_TLS_KEYS = ("tls", "sni", "alpn", "fp", "insecure", "allowInsecure")
# Keys some apps add; only their empty values are accepted (they would change the connection).
_EMPTY_KEYS = ("cs", "vcn", "pcs", "class")


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
    def parse(cls, text: str) -> VmessLink:
        """Read a v2rayN `vmess://` link (standard or URL-safe base64, padded or not)."""
        scheme, separator, payload = text.strip().partition("://")
        if not separator or scheme.lower() != "vmess":
            raise InvalidInput(KIND.not_this, hint=KIND.hint)
        raw = uri.b64decode(payload, urlsafe=True)
        if raw is None:
            raise InvalidInput("VMess link: the text after vmess:// is not base64.", hint=KIND.hint)
        try:
            document = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            document = None
        if not isinstance(document, dict):
            raise InvalidInput("VMess link: the base64 text is not a JSON object.", hint=KIND.hint)
        return uri.validated(cls, KIND, **_data(document))

    def singbox_outbound(self) -> dict[str, Any]:
        outbound = {
            **singbox_server("vmess", self.host, self.port),
            "uuid": self.uuid,
            "security": "auto",
            "alter_id": 0,
        }
        if self.tls:
            outbound["tls"] = singbox_tls(self.sni, self.insecure)
        return outbound

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = {
            **clash_server("vmess", name, self.host, self.port),
            "uuid": self.uuid,
            "alterId": 0,
            "cipher": "auto",
            "udp": True,
            "network": "tcp",
            "tls": self.tls,
        }
        if self.tls:
            proxy |= {"servername": self.sni, "skip-cert-verify": self.insecure}
        return proxy


def from_data(data: LinkData) -> VmessLink:
    """Our VMess servers have TLS."""
    return VmessLink.model_validate({"uuid": data.credential.uuid, **tls_endpoint(data)})


def _data(document: dict[str, Any]) -> dict[str, Any]:
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
        *((key, ("",)) for key in _EMPTY_KEYS),
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
            elif str(value).lower() in uri.TRUE + uri.FALSE + ("",):
                insecure = str(value).lower() in uri.TRUE
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
        data["sni"] = sni or uri.sni({}, host, KIND)
    elif sni:
        data["sni"] = sni  # refused by the model: a server name without TLS
    if document:
        raise InvalidInput(
            f"VMess link: unsupported key(s) {', '.join(sorted(document))}.",
            hint=f"The keys understood are: {', '.join(_KEYS + _TLS_KEYS)}.",
        )
    return data
