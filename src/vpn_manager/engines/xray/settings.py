"""What the database keeps for a VLESS+REALITY server and its users, as typed models
(engines/stored.py): the server's settings and private key, and a user's id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vpn_manager.engines.stored import Secret, Stored
from vpn_manager.specs import Client, ServerSpec


@dataclass(frozen=True)
class XraySettings(Stored):
    """`sni`: the name clients present; `dest`: where REALITY sends what is not ours;
    `public_key` and `short_ids`: what clients need of the REALITY keys; `api_port`: the
    control API's TCP port, used where the server has no unix socket for it."""

    CONTROL_PORTS: ClassVar[tuple[str, ...]] = ("api_port",)

    sni: str
    dest: str
    public_key: str
    short_ids: tuple[str, ...]
    api_port: int
    fingerprint: str = "chrome"  # the uTLS fingerprint clients present
    allow_private: bool = False

    @classmethod
    def of(cls, spec: ServerSpec) -> XraySettings:
        return cls.of_dict(spec.settings, spec.name)


@dataclass(frozen=True, repr=False)
class XraySecret(Secret):
    private_key: str  # REALITY's x25519 private key

    @classmethod
    def of(cls, spec: ServerSpec) -> XraySecret:
        return cls.of_dict(spec.secret, spec.name)


@dataclass(frozen=True, repr=False)
class XrayCredential(Secret):
    WHAT: ClassVar[str] = "credentials"

    uuid: str  # the user's VLESS id

    @classmethod
    def of(cls, client: Client) -> XrayCredential:
        return cls.of_dict(client.secret)
