"""What the database keeps for a sing-box server and its users, as typed models (engines/stored.py):
the server's settings and secrets, and a user's credential. Which fields a protocol has is its
row's business (protocols.py): `method` and `ssm_port` for a managed (Shadowsocks) server, `tls`
for one that needs a certificate, `allow_anonymous` for a proxy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vpn_manager.engines.stored import Secret, Stored
from vpn_manager.engines.tls import Certificate
from vpn_manager.specs import Client, ServerSpec


@dataclass(frozen=True)
class SingBoxSettings(Stored):
    """`api_port`: the api service's port (gRPC, every server); `ssm_port`: ssm-api's (managed
    servers). Both are control ports on ServerSpec.control_listen."""

    CONTROL_PORTS: ClassVar[tuple[str, ...]] = ("api_port", "ssm_port")

    api_port: int
    allow_private: bool = False
    method: str | None = None  # the Shadowsocks cipher
    outline: bool | None = None  # Shadowsocks: its method must stay one Outline's apps speak
    ssm_port: int | None = None
    tls: Certificate | None = None
    allow_anonymous: bool | None = None  # proxies only

    @classmethod
    def of(cls, spec: ServerSpec) -> SingBoxSettings:
        return cls.of_dict(spec.settings, spec.name)

    @property
    def certificate(self) -> Certificate:
        """The certificate of a TLS server (which always has one)."""
        assert self.tls is not None, "a TLS server without a certificate"
        return self.tls


@dataclass(frozen=True, repr=False)
class SingBoxSecret(Secret):
    """`api_secret`: the api service's bearer token; `psk`: the server key of a Shadowsocks 2022
    cipher."""

    api_secret: str
    psk: str | None = None

    @classmethod
    def of(cls, spec: ServerSpec) -> SingBoxSecret:
        return cls.of_dict(spec.secret, spec.name)


@dataclass(frozen=True, repr=False)
class SingBoxCredential(Secret):
    """A user's credential: the parts the protocol's credential shape has (protocols.py)."""

    WHAT: ClassVar[str] = "credentials"

    password: str | None = None
    uuid: str | None = None

    @classmethod
    def of(cls, client: Client) -> SingBoxCredential:
        return cls.of_dict(client.secret)
