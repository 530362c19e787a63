"""The transport a VLESS, VMess or Trojan link is carried over (Xray's `streamSettings.network`),
shared by those formats: raw TCP, or WebSocket, gRPC, HTTPUpgrade or XHTTP, which pass through a
CDN or a reverse proxy.

In a `vless://` or `trojan://` link (Xray's share-link proposal, XTLS/Xray-core discussion #716):

    type=tcp|ws|grpc|httpupgrade|xhttp  path=/…  host=HOST-HEADER  serviceName=…  mode=…

`path` and `host` go with ws, httpupgrade and xhttp; `serviceName` (and `mode=gun`, the only
gRPC mode written) with grpc; `mode` (packet-up, stream-up, stream-one; none for auto) with
xhttp. `params()` writes them in that order after `type`; `read()` takes them back and refuses
a parameter the transport does not use. VMess's JSON says the same with `net`, `path`, `host`
and `type` (vmess.py).

The client side of each: Xray's `streamSettings` (`xray_stream`), sing-box's `transport` block
(`singbox_transport`: sing-box has no XHTTP, which is refused in one sentence) and Clash/Mihomo's
`network` and `*-opts` (`clash_opts`: HTTPUpgrade is `ws-opts` with `v2ray-http-upgrade`;
Mihomo reads XHTTP for VLESS only).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from vpn_manager.engines.linkdata import Stream
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri

Network = Literal["raw", "ws", "grpc", "httpupgrade", "xhttp"]
NETWORKS: tuple[Network, ...] = ("raw", "ws", "grpc", "httpupgrade", "xhttp")
XHTTP_MODES = ("packet-up", "stream-up", "stream-one")  # and "" for auto
# Where REALITY can carry a stream (Xray refuses it on ws and httpupgrade).
REALITY_NETWORKS = ("raw", "grpc", "xhttp")
# The networks that take `path` and `host`.
_HTTP = ("ws", "httpupgrade", "xhttp")

_PATH = re.compile(r"/[!-~]{0,255}")  # printable ASCII without spaces, starting with '/'
_SERVICE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]{1,128}")  # one path segment, no '/'
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _check_path(value: str) -> str:
    if value and not _PATH.fullmatch(value):
        raise ValueError("use a path that starts with '/', in printable ASCII without spaces")
    return value


def _check_host_header(value: str) -> str:
    name = value.lower()
    if name and not (
        name.isascii() and len(name) <= 253 and all(_LABEL.fullmatch(p) for p in name.split("."))
    ):
        raise ValueError("use a DNS name: dot-separated letters, digits and '-'")
    return name


def _check_service(value: str) -> str:
    if value and not _SERVICE.fullmatch(value):
        raise ValueError("use up to 128 letters, digits and URL-safe punctuation, without '/'")
    return value


def _check_mode(value: str) -> str:
    value = "" if value == "auto" else value
    if value and value not in XHTTP_MODES:
        raise ValueError(f"use auto, {', '.join(XHTTP_MODES)}")
    return value


class Transport(BaseModel):
    """How one link's stream is carried; raw TCP unless it says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    network: Network = "raw"
    path: Annotated[str, AfterValidator(_check_path)] = ""  # ws, httpupgrade, xhttp
    host: Annotated[str, AfterValidator(_check_host_header)] = ""  # the Host header
    service_name: Annotated[str, AfterValidator(_check_service)] = ""  # grpc
    mode: Annotated[str, AfterValidator(_check_mode)] = ""  # xhttp; "" is auto

    @model_validator(mode="after")
    def _fits_the_network(self) -> Transport:
        if self.network not in _HTTP and (self.path or self.host):
            raise ValueError(f"a {self.network} transport has no path and no Host header")
        if self.network != "grpc" and self.service_name:
            raise ValueError(f"a {self.network} transport has no gRPC service name")
        if self.network == "grpc" and not self.service_name:
            raise ValueError("a grpc transport needs its service name (serviceName)")
        if self.network != "xhttp" and self.mode:
            raise ValueError(f"a {self.network} transport has no XHTTP mode")
        return self

    @property
    def raw(self) -> bool:
        return self.network == "raw"

    @property
    def http_path(self) -> str:
        """The path a client requests: "/" when the link leaves it out."""
        return self.path or "/"

    # --- links -----------------------------------------------------------------------------

    def params(self) -> dict[str, str]:
        """The query parameters from `type` on: type, path, host, serviceName, mode."""
        params: dict[str, str] = {"type": "tcp" if self.raw else self.network}
        if self.network in _HTTP:
            if self.path:
                params["path"] = self.path
            if self.host:
                params["host"] = self.host
        if self.network == "grpc":
            params["serviceName"] = self.service_name
            params["mode"] = "gun"
        if self.mode:
            params["mode"] = self.mode
        return params

    # --- clients ---------------------------------------------------------------------------

    def xray_stream(self, security: dict[str, Any]) -> dict[str, Any]:
        """Xray's `streamSettings`: the network, its settings, then `security` (the TLS or
        REALITY part, already keyed)."""
        if self.raw:
            return {"network": "tcp", **security}
        settings: dict[str, Any]
        if self.network == "grpc":
            settings = {"serviceName": self.service_name}
        else:
            settings = {"path": self.http_path}
            if self.host:
                settings["host"] = self.host
            if self.mode:
                settings["mode"] = self.mode
        return {"network": self.network, f"{self.network}Settings": settings, **security}

    def singbox_transport(self, server: str) -> dict[str, Any] | None:
        """sing-box's `transport` block, None on raw TCP; InvalidInput for XHTTP."""
        if self.raw:
            return None
        if self.network == "xhttp":
            raise InvalidInput(
                f"sing-box has no XHTTP transport, so it cannot reach {server}.",
                hint="Use --client xray, or a client built on Xray (v2rayN, v2rayNG, Streisand).",
            )
        if self.network == "grpc":
            return {"type": "grpc", "service_name": self.service_name}
        if self.network == "ws":
            block: dict[str, Any] = {"type": "ws", "path": self.http_path}
            if self.host:
                block["headers"] = {"Host": self.host}
            return block
        block = {"type": "httpupgrade", "path": self.http_path}
        if self.host:
            block["host"] = self.host
        return block

    def clash_opts(self, kind: str, server: str) -> dict[str, Any]:
        """Clash/Mihomo's `network` and its options; InvalidInput for XHTTP but on VLESS."""
        if self.raw:
            return {"network": "tcp"}
        if self.network == "grpc":
            return {"network": "grpc", "grpc-opts": {"grpc-service-name": self.service_name}}
        if self.network == "xhttp":
            if kind != "vless":
                raise InvalidInput(
                    f"Mihomo reads XHTTP only for VLESS, so it cannot reach {server} ({kind}).",
                    hint="Use an Xray-based client (v2rayN, v2rayNG, Streisand) for this server.",
                )
            opts: dict[str, Any] = {"path": self.http_path}
            if self.host:
                opts["host"] = self.host
            if self.mode:
                opts["mode"] = self.mode
            return {"network": "xhttp", "xhttp-opts": opts}
        ws: dict[str, Any] = {"path": self.http_path}
        if self.host:
            ws["headers"] = {"Host": self.host}
        if self.network == "httpupgrade":
            ws["v2ray-http-upgrade"] = True
        return {"network": "ws", "ws-opts": ws}


def read(params: dict[str, str], kind: uri.Kind) -> dict[str, Any]:
    """The `Transport` fields from a link's query (taking `type`, `headerType`, `path`, `host`,
    `serviceName`, `mode` out); InvalidInput for a transport or parameter we cannot honour."""
    network = params.pop("type", "tcp")
    if network in ("tcp", "raw"):
        header = params.pop("headerType", "none")
        if header not in ("none", ""):
            raise InvalidInput(f"{kind.name} link: headerType={header} is not supported.")
        return {"network": "raw"}
    if network not in NETWORKS:
        raise InvalidInput(
            f"{kind.name} link: the transport type={network} is not supported; use tcp, ws, "
            "grpc, httpupgrade or xhttp.",
            hint=kind.hint,
        )
    data: dict[str, Any] = {"network": network}
    if network in _HTTP:
        for key in ("path", "host"):
            if key in params:
                data[key] = params.pop(key)
    if network == "grpc":
        data["service_name"] = params.pop("serviceName", "")
        grpc_mode = params.pop("mode", "gun")
        if grpc_mode not in ("gun", ""):
            raise InvalidInput(
                f"{kind.name} link: gRPC mode={grpc_mode} is not supported; only gun is."
            )
    if network == "xhttp" and "mode" in params:
        data["mode"] = params.pop("mode")
    return data


def of(stream: Stream) -> dict[str, Any]:
    """The `Transport` fields of an engine's `Stream`."""
    return {
        "network": stream.network,
        "path": stream.path,
        "host": stream.host,
        "service_name": stream.service_name,
        "mode": stream.mode,
    }
