"""HTTP and SOCKS5 proxy links, what curl and most apps take as a proxy:

    http://USER:PASSWORD@HOST:PORT   socks5://USER:PASSWORD@HOST:PORT

They carry no name, so `ProxyLink.parse` takes the name as an argument; reading also takes
`socks5h://`. A proxy needs no client program, but a sing-box client can still chain through
one: its outbound is `http` or `socks` (`version: "5"`) with `username` and `password`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import uri
from vpn_manager.links.fields import (
    Host,
    LinkName,
    Port,
    ProxyCredential,
    clash_server,
    endpoint,
    singbox_server,
)

ProxyScheme = Literal["http", "socks5"]
KIND = uri.Kind("proxy", ("http", "socks5", "socks5h"), "socks5://USER:PASSWORD@HOST:PORT")
_SCHEMES: dict[str, ProxyScheme] = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}


class ProxyLink(BaseModel):
    """An HTTP or SOCKS5 proxy account: a user name and a password."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    scheme: ProxyScheme
    username: ProxyCredential
    password: ProxyCredential = Field(repr=False)
    host: Host
    port: Port
    name: LinkName | None = None  # not part of the URI

    @field_validator("username")
    @classmethod
    def _no_colon_in_username(cls, username: str) -> str:
        if ":" in username:
            raise ValueError("HTTP Basic authentication cannot carry a ':' in the user name")
        return username

    def to_uri(self) -> str:
        userinfo = f"{uri.escape(self.username)}:{uri.escape(self.password)}"
        return uri.build(self.scheme, userinfo, self.host, self.port)

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> ProxyLink:
        """Read `http://USER:PASS@HOST:PORT` or `socks5://…` (also `socks5h://`); the URI has no
        name, so give it here if the link should have one."""
        parts = uri.split(text, KIND, name_in_fragment=False)
        if parts.query is not None or parts.fragment is not None:
            raise InvalidInput(
                "A proxy link has only user, password, host and port: no ?… and no #….",
                hint=KIND.hint,
            )
        user, password = uri.user_and_password(
            parts, KIND, "user and password", "SCHEME://USER:PASSWORD@HOST:PORT"
        )
        return uri.validated(
            cls,
            KIND,
            scheme=_SCHEMES[parts.scheme],
            username=uri.unquote_as(user, "user name", KIND),
            password=uri.unquote_as(password, "password", KIND),
            host=parts.host,
            port=parts.port,
            name=name,
        )

    def singbox_outbound(self) -> dict[str, Any]:
        kind = "http" if self.scheme == "http" else "socks"
        proxy = singbox_server(kind, self.host, self.port)
        if self.scheme == "socks5":
            proxy["version"] = "5"
        return {**proxy, "username": self.username, "password": self.password}

    def clash_proxy(self, name: str) -> dict[str, Any]:
        proxy = clash_server(self.scheme, name, self.host, self.port)
        if self.scheme == "socks5":
            proxy["udp"] = True
        return {**proxy, "username": self.username, "password": self.password}


def from_data(data: LinkData) -> ProxyLink:
    return ProxyLink.model_validate(
        {
            "scheme": data.format,
            "username": data.credential.username,
            "password": data.credential.password,
            **endpoint(data),
        }
    )
