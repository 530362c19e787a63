"""What the database keeps for an Xray server and its users, as typed models (engines/stored.py):
the server's settings and private key, and a user's credential.

A `vless-reality` server (and one stored before transports existed) has no `network` or
`security` key: raw TCP with REALITY. A vless, trojan or vmess server has both, the transport's
own values (`path`, `host_header`, `service_name`, `xhttp_mode`), and either the REALITY fields
(`sni`, `dest`, `public_key`, `short_ids`, the secret's `private_key`) or a certificate (`tls`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vpn_manager.engines.stored import Secret, Stored
from vpn_manager.engines.tls import Certificate
from vpn_manager.errors import StorageError
from vpn_manager.specs import Client, ServerSpec


@dataclass(frozen=True)
class XraySettings(Stored):
    """`sni`: the name clients present; `dest`: where REALITY sends what is not ours;
    `public_key` and `short_ids`: what clients need of the REALITY keys; `api_port`: the
    control API's TCP port, used where the server has no unix socket for it; `network` and
    `security`: the transport (raw, ws, grpc, httpupgrade, xhttp) and tls or reality; `path`,
    `host_header` (the Host clients send), `service_name` (gRPC) and `xhttp_mode`: what the
    transport needs; `tls`: the certificate of a TLS server; `decoy`: the HTTP site (HOST:PORT)
    a TLS server passes what is not a client on to, `local` (a small local page) or `none`."""

    CONTROL_PORTS: ClassVar[tuple[str, ...]] = ("api_port",)

    api_port: int
    sni: str | None = None
    dest: str | None = None
    public_key: str | None = None
    short_ids: tuple[str, ...] | None = None
    fingerprint: str | None = None  # the uTLS fingerprint clients present (REALITY)
    allow_private: bool = False
    network: str | None = None  # None: raw (a vless-reality server)
    security: str | None = None  # None: reality (a vless-reality server)
    path: str | None = None
    host_header: str | None = None
    service_name: str | None = None
    xhttp_mode: str | None = None
    tls: Certificate | None = None
    # What non-clients of a TLS server get: HOST:PORT of a site, "local" (a small local page;
    # also None, a server stored before decoys) or "none".
    decoy: str | None = None

    @classmethod
    def of(cls, spec: ServerSpec) -> XraySettings:
        settings = cls.of_dict(spec.settings, spec.name)
        # What a REALITY server cannot run without, and a TLS one its certificate: refused as
        # a missing key would be.
        needed = ("sni", "dest", "public_key", "short_ids") if settings.reality else ("tls",)
        for name in needed:
            if getattr(settings, name) is None:
                raise StorageError(
                    f"The stored settings of server {spec.name!r} lack {name!r}.",
                    hint="The database was changed by hand or by another tool; "
                    "install the server again.",
                )
        return settings

    @property
    def transport(self) -> str:
        """raw, ws, grpc, httpupgrade or xhttp."""
        return self.network or "raw"

    @property
    def reality(self) -> bool:
        return self.security in (None, "reality")

    @property
    def certificate(self) -> Certificate:
        """The certificate of a TLS server (which always has one)."""
        assert self.tls is not None, "a TLS server without a certificate"
        return self.tls


@dataclass(frozen=True, repr=False)
class XraySecret(Secret):
    private_key: str | None = None  # REALITY's x25519 private key (a TLS server has none)

    @classmethod
    def of(cls, spec: ServerSpec) -> XraySecret:
        return cls.of_dict(spec.secret, spec.name)


@dataclass(frozen=True, repr=False)
class XrayCredential(Secret):
    """A user's credential: `uuid` on VLESS and VMess, `password` on Trojan."""

    WHAT: ClassVar[str] = "credentials"

    uuid: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, client: Client) -> XrayCredential:
        return cls.of_dict(client.secret)
