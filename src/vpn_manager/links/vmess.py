"""VMess links: `vmess://` and the v2rayN JSON (keys in v2rayN's order), standard base64 with
padding; `insecure` is "1" or "0", as v2rayN and v2rayNG write and read it.

    vmess://BASE64({"v":"2","ps":NAME,"add":HOST,"port":"PORT","id":UUID,"aid":"0",…})

The transport: `net` is tcp, ws, grpc, httpupgrade or xhttp; `host` the Host header and `path`
the path (ws, httpupgrade, xhttp); for grpc `path` is the service name and `type` "gun"; for
xhttp `type` is the mode ("auto" when none); otherwise `type` is "none". With TLS, `fp` and
`alpn` as the link says, and for a self-signed certificate a `pcs` key on every transport, its
SHA-256 pin, which Xray clients need (clients that do not know it ignore it and go by `insecure`).
Reading takes standard or URL-safe base64, padded or not, and refuses what the model cannot say
(another transport or cipher, an alterId). The sing-box outbound is `security: aes-128-gcm`
(sing-box's `auto` is refused by Xray's VMess) with `alter_id: 0`, with TLS `tls.server_name`
= sni and `tls.insecure` as the link says, and the transport's block (sing-box has no XHTTP).
"""

from __future__ import annotations

import base64
import json
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
    ServerName,
    UserId,
    clash_server,
    singbox_server,
    singbox_tls,
    tls_endpoint,
    xray_tls,
)
from vpn_manager.links.transport import Transport

KIND = uri.Kind("VMess", ("vmess",), "vmess://BASE64-OF-V2RAYN-JSON")
_KEYS = ("v", "ps", "add", "port", "id", "aid", "scy", "net", "type", "host", "path")
_TLS_KEYS = ("tls", "sni", "alpn", "fp", "insecure", "allowInsecure", "pcs")
# Keys some apps add; only their empty values are accepted (they would change the connection).
_EMPTY_KEYS = ("cs", "vcn", "class")


class VmessLink(BaseModel):
    """A VMess account: a UUID (alterId 0, security auto) over one transport, with or without
    TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    uuid: UserId = Field(repr=False)
    host: Host
    port: Port
    sni: ServerName | None = None  # required with TLS, absent without
    tls: bool = True
    insecure: bool = False
    pin_sha256: PinSha256 = None  # the self-signed certificate's SHA-256 (`pcs`)
    fingerprint: Fingerprint | None = None  # uTLS (`fp`)
    alpn: Alpn = None
    transport: Transport = Field(default_factory=Transport)
    name: LinkName

    @model_validator(mode="after")
    def _tls_settings_need_tls(self) -> VmessLink:
        if self.tls and self.sni is None:
            raise ValueError("a VMess link with TLS needs the server name (sni)")
        if not self.tls and (
            self.sni is not None or self.insecure or self.fingerprint or self.alpn
        ):
            raise ValueError("a VMess link without TLS has no sni, insecure, fp or alpn")
        if self.pin_sha256 and not self.insecure:
            raise ValueError("a certificate pin (pcs) goes with insecure")
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
            **_transport_keys(self.transport),
            "tls": "tls" if self.tls else "",
            "sni": self.sni or "",
            "alpn": self.alpn or "",
            "fp": self.fingerprint or "",
            "insecure": "1" if self.insecure else "0",
        }
        if self.pin_sha256:
            document["pcs"] = self.pin_sha256
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

    def xray_outbound(self) -> dict[str, Any]:
        security: dict[str, Any] = {"security": "none"}
        if self.tls:
            security = xray_tls(
                self.name, self.sni, self.insecure, self.pin_sha256, self.alpn, self.fingerprint
            )
        return {
            "tag": OUTBOUND_TAG,
            "protocol": "vmess",
            "settings": {
                "vnext": [
                    {
                        "address": self.host,
                        "port": self.port,
                        "users": [{"id": self.uuid, "security": "auto"}],
                    }
                ]
            },
            "streamSettings": self.transport.xray_stream(security),
        }

    def singbox_outbound(self) -> dict[str, Any]:
        outbound = {
            **singbox_server("vmess", self.host, self.port),
            "uuid": self.uuid,
            # Not "auto": sing-box's auto is refused by Xray 26's VMess ("unknown security
            # type"); every VMess server takes aes-128-gcm.
            "security": "aes-128-gcm",
            "alter_id": 0,
        }
        if self.tls:
            outbound["tls"] = singbox_tls(self.sni, self.insecure, self.alpn, self.fingerprint)
        if (block := self.transport.singbox_transport(self.name)) is not None:
            outbound["transport"] = block
        return outbound

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = {
            **clash_server("vmess", name, self.host, self.port),
            "uuid": self.uuid,
            "alterId": 0,
            "cipher": "auto",
            "udp": True,
            **self.transport.clash_opts("vmess", self.name),
            "tls": self.tls,
        }
        if self.tls:
            proxy |= {"servername": self.sni, "skip-cert-verify": self.insecure}
            if self.alpn:
                proxy["alpn"] = self.alpn.split(",")
            if self.fingerprint:
                proxy["client-fingerprint"] = self.fingerprint
        return proxy


def from_data(data: LinkData) -> VmessLink:
    """Our VMess servers have TLS. A self-signed certificate is pinned on every transport."""
    fields = {"uuid": data.credential.uuid, **tls_endpoint(data)}
    if data.stream.network != "raw":
        fields["transport"] = transport.of(data.stream)
    if data.tls is not None and data.tls.insecure:
        fields["pin_sha256"] = data.tls.cert_sha256
    return VmessLink.model_validate(fields)


def _transport_keys(stream: Transport) -> dict[str, str]:
    """`net`, `type`, `host` and `path` of the v2rayN JSON."""
    if stream.network == "grpc":
        return {"net": "grpc", "type": "gun", "host": "", "path": stream.service_name}
    kind = (stream.mode or "auto") if stream.network == "xhttp" else "none"
    net = "tcp" if stream.raw else stream.network
    return {"net": net, "type": kind, "host": stream.host, "path": stream.path}


def _read_transport(net: str, kind: str, host: str, path: str) -> dict[str, Any]:
    """The `Transport` fields from `net`, `type`, `host` and `path`."""
    if net in ("tcp", "raw", ""):
        if kind not in ("none", ""):
            raise InvalidInput(
                f"VMess link: type={kind!r} is not supported on tcp; only 'none' is."
            )
        return {"network": "raw", "host": host, "path": path}  # the model refuses a host or path
    if net == "grpc":
        if kind not in ("gun", "", "none"):
            raise InvalidInput(f"VMess link: gRPC type={kind!r} is not supported; only 'gun' is.")
        if host:
            raise InvalidInput("VMess link: a grpc transport has no Host header.")
        return {"network": "grpc", "service_name": path}
    if net == "xhttp":
        return {"network": "xhttp", "host": host, "path": path, "mode": kind}
    if net in ("ws", "httpupgrade"):
        if kind not in ("none", ""):
            raise InvalidInput(f"VMess link: type={kind!r} is not supported on {net}.")
        return {"network": net, "host": host, "path": path}
    raise InvalidInput(
        f"VMess link: net={net!r} is not supported; use tcp, ws, grpc, httpupgrade or xhttp."
    )


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
        *((key, ("",)) for key in _EMPTY_KEYS),
    ):
        value = text(key, allowed[0])
        if value not in allowed:
            raise InvalidInput(
                f"VMess link: {key}={value!r} is not supported; only {allowed[0]!r} is.",
                hint="Links with other ciphers or an alterId cannot be used here.",
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
    stream = _read_transport(text("net"), text("type"), text("host"), text("path"))
    extra = {key: text(key) for key in ("alpn", "fp", "pcs")}
    data: dict[str, Any] = {
        "transport": stream,
        "alpn": extra["alpn"] or None,
        "fingerprint": extra["fp"] or None,
        "pin_sha256": extra["pcs"] or None,
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
