"""Shadowsocks links (`ss://`, SIP002), the form Outline's access keys have:

    ss://BASE64URL(METHOD:PASSWORD)@HOST:PORT#NAME                 Shadowsocks AEAD (SIP002)
    ss://METHOD:PERCENT(PASSWORD)@HOST:PORT#NAME                   Shadowsocks 2022 (SIP022)

- AEAD (aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305): the user info is URL-safe base64
  WITHOUT padding, as Outline's server writes its access keys. Outline's client decodes URL-safe
  base64 without padding first and falls back to standard base64 (which must then be padded):
  padded URL-safe base64 fails in it whenever the text has a `-` or `_`.
- 2022 (2022-blake3-*): SIP002 forbids base64 there; the method and the password are
  percent-encoded instead (`+ / = :` become `%2B %2F %3D %3A`). A multi-user server's client
  password is `SERVER_PSK:USER_PSK` (only the AES methods have user keys). Outline and
  shadowsocks-libev do not speak 2022; sing-box, Xray, shadowsocks-rust and their apps do.

Reading accepts Outline's `outline=1`, padded or standard base64, and percent-encoded user info;
a SIP003 plugin is refused. The sing-box outbound takes `method` and `password` (for a
multi-user 2022 server the whole `SERVER_PSK:USER_PSK`).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    Host,
    LinkName,
    Port,
    Secret,
    clash_server,
    endpoint,
    singbox_server,
)

# Shadowsocks 2022 methods (SIP022) and the size of their keys in bytes.
SS2022_KEY_BYTES = {
    "2022-blake3-aes-128-gcm": 16,
    "2022-blake3-aes-256-gcm": 32,
    "2022-blake3-chacha20-poly1305": 32,
}
ShadowsocksMethod = Literal[
    "aes-128-gcm",
    "aes-256-gcm",
    "chacha20-ietf-poly1305",
    "2022-blake3-aes-128-gcm",
    "2022-blake3-aes-256-gcm",
    "2022-blake3-chacha20-poly1305",
]
KIND = uri.Kind("Shadowsocks", ("ss",), "ss://USERINFO@HOST:PORT#NAME")


class ShadowsocksLink(BaseModel):
    """A Shadowsocks account: an AEAD or a 2022 method and its password."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    method: ShadowsocksMethod
    # AEAD: any text. 2022: the key, standard base64 of the method's key size; on a multi-user
    # server the client's password is SERVER_PSK:USER_PSK.
    password: Secret = Field(repr=False)
    host: Host
    port: Port
    name: LinkName

    @field_validator("password")
    @classmethod
    def _check_2022_keys(cls, password: str, info: ValidationInfo) -> str:
        method = info.data.get("method")
        if method not in SS2022_KEY_BYTES:
            return password
        size = SS2022_KEY_BYTES[method]
        keys = password.split(":")
        if len(keys) > 2 or (len(keys) == 2 and "aes" not in method):
            raise ValueError(
                "use one key, or SERVER_PSK:USER_PSK (multi-user needs a 2022 AES method)"
            )
        for key in keys:
            raw = uri.b64decode(key, urlsafe=False)
            if raw is None or len(raw) != size or base64.b64encode(raw).decode() != key:
                raise ValueError(
                    f"a {method} key is {size} bytes in standard base64 with padding "
                    f"(sing-box generate rand --base64 {size})"
                )
        return password

    def to_uri(self) -> str:
        """`ss://`: base64 user info for AEAD methods (SIP002), percent-encoded for 2022."""
        if self.method in SS2022_KEY_BYTES:
            userinfo = f"{self.method}:{uri.escape(self.password)}"
        else:
            raw = f"{self.method}:{self.password}".encode()
            userinfo = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return uri.build("ss", userinfo, self.host, self.port, name=self.name)

    @classmethod
    def parse(cls, text: str) -> ShadowsocksLink:
        """Read an `ss://` link (base64 or plain user info); InvalidInput if it is not one."""
        parts = uri.split(text, KIND)
        params = parts.params
        if params.pop("outline", "1") != "1":  # Outline marks its keys; it means nothing else
            raise InvalidInput("Shadowsocks link: the parameter 'outline' must be 1.")
        if "plugin" in params:
            raise InvalidInput(
                "Shadowsocks link: plugins are not supported (it has plugin=…).",
                hint="Use a link of a server without a SIP003 plugin.",
            )
        uri.no_more(params, KIND)
        method, password = _userinfo(uri.need_userinfo(parts, KIND, "method and password"))
        return uri.validated(
            cls,
            KIND,
            method=method.lower(),
            password=password,
            host=parts.host,
            port=parts.port,
            name=parts.name,
        )

    def singbox_outbound(self) -> dict[str, Any]:
        return {
            **singbox_server("shadowsocks", self.host, self.port),
            "method": self.method,
            "password": self.password,
        }

    def clash_proxy(self, name: str) -> dict[str, Any]:
        return {
            **clash_server("ss", name, self.host, self.port),
            "cipher": self.method,
            "password": self.password,
            "udp": True,
        }

    def outline_config(self) -> dict[str, Any]:
        """The JSON an Outline client reads from a dynamic access key (`ssconf://`)."""
        return {
            "server": self.host,
            "server_port": self.port,
            "password": self.password,
            "method": self.method,
        }


def from_data(data: LinkData) -> ShadowsocksLink:
    return ShadowsocksLink.model_validate(
        {"method": data.credential.method, "password": data.credential.password, **endpoint(data)}
    )


def _userinfo(userinfo: str) -> tuple[str, str]:
    """(method, password) from SIP002 user info: METHOD:PASSWORD percent-encoded, or base64."""
    if ":" in userinfo:
        method, _, password = userinfo.partition(":")
        return uri.unquote_as(method, "method", KIND), uri.unquote_as(password, "password", KIND)
    text = uri.unquote_as(userinfo, "user info", KIND)
    if ":" in text:  # the colon itself was percent-encoded
        method, _, password = text.partition(":")
        return method, password
    raw = uri.b64decode(text, urlsafe=True)
    if raw is None:
        raise InvalidInput(
            "Shadowsocks link: the user info is neither METHOD:PASSWORD nor base64 of it.",
            hint=KIND.hint,
        )
    try:
        method, separator, password = raw.decode().partition(":")
    except UnicodeDecodeError:
        separator = ""
    if not separator or not password:
        raise InvalidInput(
            "Shadowsocks link: the base64 user info does not decode to METHOD:PASSWORD.",
            hint=KIND.hint,
        )
    return method, password
