"""The plain data a server and its users are handed around as, between storage (which reads
them from the database), the services and the engines (which are given them): `ServerSpec` and
`Client`. Plain dataclasses, no pydantic: the service process loads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServerSpec:
    """Everything an engine needs about one server, secrets included. Never printed.
    `settings` and `secret` are what the database keeps, as it keeps them (JSON); each engine
    reads them through its typed models (engines/*/settings.py)."""

    name: str
    protocol: str
    listen: str
    port: int
    host: str
    settings: dict[str, Any]
    secret: dict[str, Any] = field(repr=False)
    # Where the engine runs (see runtimes/): engines only read `control_listen`, the address
    # their TCP control APIs bind to (loopback natively; every address inside a container, whose
    # API ports the Docker runtime publishes on the host's loopback only), and `control_dir`, a
    # private directory of ours (0700) where an engine that can serves its control API on a unix
    # socket instead (empty: it cannot be given one, e.g. on a remote Docker engine).
    runtime: str = "native"
    image: str | None = None
    docker_host: str | None = None
    control_listen: str = "127.0.0.1"
    control_dir: str = ""
    # The engine the server was installed on (engines/registry.py): a Trojan or VMess server
    # made by an older version runs on sing-box, a newer one on Xray.
    engine: str = ""


@dataclass(frozen=True)
class Client:
    """One user's credentials on one server, as the engine sees them. `secret` is what the
    database keeps (JSON); each engine reads it through its credential model."""

    user_id: int
    name: str
    secret: dict[str, Any] = field(repr=False)
    # For a user an engine has and the database does not (to remove it): the engine's own name.
    alias: str = ""

    @property
    def email(self) -> str:
        """The engine-side identity: stable across renames and free of secrets (it is logged)."""
        return self.alias or f"user-{self.user_id}"
