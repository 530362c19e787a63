"""PostgreSQL URLs as people write them for libpq (`?sslmode=require`, `?options=-c …`): checked
once, then split into what SQLAlchemy is given (the URL without its query) and what asyncpg is
given (the libpq parameters, in a DSN it parses itself, and connect_timeout as its `timeout`).

Light on purpose (standard library only): the settings validate URLs with it, and the storage
turns them into driver arguments with it, so the two cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from vpn_manager.paths import mask_url

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# The libpq parameters asyncpg understands in a DSN, with what it does with each.
_PASSED_TO_ASYNCPG = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "krbsrvname",
        "gsslib",
        # Sent to the server as start-up parameters, as libpq does.
        "options",
        "application_name",
    }
)
KNOWN_PARAMETERS = frozenset({*_PASSED_TO_ASYNCPG, "connect_timeout"})


@dataclass(frozen=True)
class PostgresTarget:
    """A checked PostgreSQL URL, split for SQLAlchemy and asyncpg."""

    url: str  # for SQLAlchemy: postgresql+asyncpg://user:password@host:port/db, no query
    dsn: str  # for asyncpg: postgresql://… with the libpq parameters it takes
    connect_timeout_s: float | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def sslmode(self) -> str:
        return self.parameters.get("sslmode", "prefer")


def postgres_target(url: str) -> PostgresTarget:
    """Check a postgresql+asyncpg:// URL; ValueError with the reason (a phrase that never
    quotes the password) when it is malformed or has a parameter we do not know."""
    parts = urlsplit(url)
    for host in parts.netloc.rsplit("@", 1)[-1].split(","):
        _check_port(host)
    parameters: dict[str, str] = {}
    if parts.query:
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError(
                f"its query {_shown(parts.query)!r} is not name=value pairs joined by '&'"
            ) from None
        for name, value in pairs:
            if name not in KNOWN_PARAMETERS:
                raise ValueError(
                    f"it has the parameter {name!r}, which is not one vpn-manager knows "
                    f"(it takes {', '.join(sorted(KNOWN_PARAMETERS))})"
                )
            parameters[name] = value
    if "port" in parameters:
        _check_port(f"h:{parameters['port']}")
    mode = parameters.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise ValueError(f"sslmode {mode!r} is not one of {', '.join(SSL_MODES)}")
    timeout = None
    if "connect_timeout" in parameters:
        text = parameters["connect_timeout"]
        try:
            timeout = float(text)
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"connect_timeout {text!r} is not a number of seconds")
    passed = "&".join(
        f"{name}={value}"
        for name, value in (pair.split("=", 1) for pair in parts.query.split("&") if pair)
        if name in _PASSED_TO_ASYNCPG
    )
    bare = parts._replace(query="", fragment="")
    return PostgresTarget(
        url=urlunsplit(bare),
        dsn=urlunsplit(bare._replace(scheme="postgresql", query=passed)),
        connect_timeout_s=timeout,
        parameters=parameters,
    )


def _check_port(host: str) -> None:
    if host.startswith("["):  # [IPv6]:port
        _, _, rest = host.partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ""
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"the port {port!r} is not a number from 1 to 65535")


def _shown(query: str) -> str:
    """A query as it may be quoted in an error: any password in it hidden."""
    return mask_url(f"x://h/?{query}").split("?", 1)[1]
