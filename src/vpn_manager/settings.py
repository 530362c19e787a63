"""Settings and paths. This module alone knows where things live.

Precedence, highest first: command-line flags, environment (`VPN_` prefix, `__` for nesting), the
TOML config file (`$VPN_CONFIG`, else `config.toml` in the config directory), built-in defaults.
`VPN_HOME=DIR` puts config, data and state all under DIR; otherwise the XDG base directories apply.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vpn_manager.dburl import postgres_target
from vpn_manager.errors import ConfigError
from vpn_manager.labels import DEFAULT_TEMPLATE, check_template
from vpn_manager.paths import Paths, mask_url

# Paths and mask_url are defined in vpn_manager.paths (no pydantic) and offered here too.
__all__ = [
    "ApiSettings",
    "DatabaseSettings",
    "DockerImages",
    "DockerSettings",
    "LinkSettings",
    "OutputFormat",
    "OutputSettings",
    "Paths",
    "ServiceSettings",
    "Settings",
    "WebSettings",
    "effective_settings",
    "load_settings",
    "mask_url",
    "read_config_file",
    "setting_variables",
]

OutputFormat = Literal["table", "json", "yaml", "plain"]


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; empty means SQLite in the data directory. "
        "PostgreSQL: postgresql://user:password@host/db, with libpq's sslmode, sslrootcert, "
        "options, application_name, connect_timeout and the like as ?name=value",
    )
    busy_timeout_ms: int = Field(
        default=15000, ge=0, description="How long SQLite waits on a lock."
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for a server."
    )

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0]
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if scheme in ("postgresql", "postgres"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        elif scheme != "postgresql+asyncpg":
            raise ValueError("use a postgresql://… or sqlite:///… URL")
        postgres_target(value)  # a malformed URL or an unknown parameter: refused here
        return value


class OutputSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: OutputFormat = "table"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_interval_s: float = Field(
        default=10.0, gt=0, description="How often `vpn serve` reads the engines' counters."
    )
    metrics_port: int = Field(
        default=9477, ge=0, le=65535, description="Prometheus metrics on 127.0.0.1 (0: off)."
    )
    device_ban_s: int = Field(
        default=60,
        ge=0,
        description="How long a device over its user's device limit is kept off the server's "
        "port after its connections are cut (0: cut only).",
    )


class DockerImages(BaseModel):
    """The image each engine runs from under the Docker runtime (`--image` overrides per server).
    The runtime runs the engine's binary from the image's PATH as the container's entrypoint."""

    model_config = ConfigDict(extra="forbid")

    xray: str = Field(default="ghcr.io/xtls/xray-core:latest", description="Xray-core.")
    sing_box: str = Field(default="ghcr.io/sagernet/sing-box:latest", description="sing-box.")
    wireguard: str = Field(
        default="ghcr.io/wg-easy/wg-easy:15",
        description="WireGuard: an image with wireguard-go, wg, ip and nft on its PATH.",
    )


class DockerSshSettings(BaseModel):
    """How `ssh` reaches a remote Docker host (`docker.host = "ssh://user@host[:port]"`). The
    system's OpenSSH client is used, in batch mode (keys or an agent, never a password prompt)."""

    model_config = ConfigDict(extra="forbid")

    config_file: str | None = Field(
        default=None, description="An ssh_config file for `ssh -F` (empty: ssh's own)."
    )
    identity_file: str | None = Field(
        default=None, description="A private key for `ssh -i` (empty: ssh's defaults or agent)."
    )
    known_hosts_file: str | None = Field(
        default=None,
        description="The known_hosts file the host's key is checked against (empty: ssh's own).",
    )
    persist_s: int = Field(
        default=60,
        ge=1,
        description="How long the shared ssh connection stays up after its last use.",
    )
    remote_socket: str = Field(
        default="/var/run/docker.sock", description="The Docker socket on the remote host."
    )


class DockerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None,
        description="The Docker engine: unix:///…, tcp://127.0.0.1:PORT, ssh://user@host[:port] "
        "or a Docker context name; empty means DOCKER_HOST or the local socket.",
    )
    images: DockerImages = DockerImages()
    ssh: DockerSshSettings = DockerSshSettings()

    def image(self, setting: str) -> str:
        return str(getattr(self.images, setting))


class WebSettings(BaseModel):
    """`vpn web`: where users' apps fetch their subscription URL (on loopback unless chosen)."""

    model_config = ConfigDict(extra="forbid")

    listen: str = Field(
        default="127.0.0.1",
        description="Where subscriptions are served (0.0.0.0 or :: to serve them publicly).",
    )
    port: int = Field(default=2096, ge=1, le=65535, description="The subscription port.")
    public_url: str | None = Field(
        default=None,
        description="The address users' apps fetch, https://HOST[:PORT][/PREFIX] (empty: the "
        "address each request came to).",
    )
    path_prefix: str = Field(
        default="", description="A path before /sub/TOKEN, e.g. /vpn behind a reverse proxy."
    )
    cert_file: str | None = Field(default=None, description="TLS certificate (PEM) for HTTPS.")
    key_file: str | None = Field(default=None, description="Its private key (PEM).")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed.",
    )
    title: str = Field(default="VPN", max_length=60, description="The name users' apps show.")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("use a path such as /vpn (letters, digits, . _ ~ -)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("use http(s)://HOST[:PORT][/PREFIX]")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network") from None
        return value


class ApiSettings(BaseModel):
    """`vpn web`'s REST API: its own listener, on loopback unless chosen (API keys are its only
    protection)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Serve the REST API beside subscriptions.")
    listen: str = Field(
        default="127.0.0.1",
        description="Where the API listens (another address makes it reachable from the network).",
    )
    port: int = Field(default=2097, ge=1, le=65535, description="The API's port.")


class LinkSettings(BaseModel):
    """How links name themselves in client apps (vpn_manager.labels)."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(
        default=DEFAULT_TEMPLATE,
        description="What an app shows for a link, from {user} and {server} (it must hold "
        "{server}, so that a user's servers differ).",
    )

    @field_validator("label")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


class Settings(BaseModel):
    """The effective settings. Built once in the entry point (load_settings) and passed down;
    `Settings()` alone is the built-in defaults."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    database: DatabaseSettings = DatabaseSettings()
    output: OutputSettings = OutputSettings()
    service: ServiceSettings = ServiceSettings()
    runtime: Literal["native", "docker"] = Field(
        default="native", description="Where `vpn server install` runs new servers."
    )
    docker: DockerSettings = DockerSettings()
    web: WebSettings = WebSettings()
    api: ApiSettings = ApiSettings()
    links: LinkSettings = LinkSettings()
    timezone: str = Field(
        default="UTC", description="Zone for dates typed without one and for calendar resets."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    import_max_mb: int = Field(
        default=256, ge=1, description="The largest file `vpn user import` reads, in MB."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


ENV_PREFIX = "VPN_"
_NOT_SETTINGS = {"VPN_HOME", "VPN_CONFIG"}  # they choose paths, not settings


def setting_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that the settings are read from (env_settings): `VPN_` and a
    top-level setting or section; VPN_HOME, VPN_CONFIG and VPN_DEBUG are not among them."""
    found: dict[str, str] = {}
    for name, value in env.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in _NOT_SETTINGS:
            continue
        if upper.removeprefix(ENV_PREFIX).lower().split("__")[0] in Settings.model_fields:
            found[name] = value
    return found


def env_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment gives: `VPN_` plus the dotted key with `__` for the dots, in
    any case (VPN_DATABASE__BUSY_TIMEOUT_MS is database.busy_timeout_ms). Variables naming no
    setting (VPN_DEBUG, VPN_HOME) are not settings; a whole section may be given as JSON."""
    found: dict[str, Any] = {}
    # Whole sections first, so that a nested variable wins over the same key in a section's JSON.
    variables = setting_variables(env)
    for name, value in sorted(variables.items(), key=lambda item: "__" in item[0]):
        *parents, leaf = name.upper().removeprefix(ENV_PREFIX).lower().split("__")
        node = found
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = _section(leaf, value) if not parents else value
    return found


def _section(key: str, value: str) -> Any:
    """A top-level variable's value: JSON for a section (VPN_DOCKER='{"host": …}'), else text."""
    annotation = Settings.model_fields[key].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # validation then says the section wants a table
    return value


def _merged(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """`low` with `high` laid over it, table by table."""
    out = dict(low)
    for key, value in high.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, dict):
            out[key] = _merged(below, value)
        else:
            out[key] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Read the TOML config file; a missing file is an empty one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Cannot read the config file {path}: {getattr(exc, 'strerror', None) or exc}.",
            hint="Check the file's permissions, or point VPN_CONFIG at another file.",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The config file {path} is not valid TOML: {exc}.",
            hint="Fix that line, or run `vpn config show` after editing to check it.",
        ) from None


def load_settings(
    paths: Paths,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings; `overrides` are the command-line flags (dotted keys)."""
    init: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = init
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    env = os.environ if env is None else env
    layered = _merged(_merged(read_config_file(paths.config_file), env_settings(env)), init)
    try:
        return Settings.model_validate(layered)
    except ValidationError as exc:
        raise _explain(exc, paths.config_file, env) from None


def _explain(exc: ValidationError, config_file: Path, env: Mapping[str, str]) -> ConfigError:
    """Turn the first validation error into one sentence naming where the bad value came from."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    env_name = "VPN_" + "__".join(loc).upper()
    reason = str(error["msg"]).removeprefix("Value error, ")
    from_env = [name for name in env if name.upper() == env_name]
    if from_env:
        origin = f"from the environment variable {from_env[0]}"
    else:
        line = _line_of(config_file, loc[-1])
        origin = f"in {config_file}" + (f" line {line}" if line else "")
    return ConfigError(
        f"Invalid setting {key} {origin}: {reason}.",
        hint="Run `vpn config show --defaults` to see every setting and its default.",
    )


def _line_of(path: Path, key: str) -> int | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
    header = re.compile(rf"^\s*\[\s*{re.escape(key)}\s*\]")
    for number, line in enumerate(lines, start=1):
        if pattern.match(line) or header.match(line):
            return number
    return None


def effective_settings(settings: Settings, *, defaults: bool = False) -> dict[str, Any]:
    """The settings as a plain dict with secrets masked (for `vpn config show`)."""
    data = (Settings.model_construct() if defaults else settings).model_dump(mode="json")
    if data["database"]["url"]:
        data["database"]["url"] = mask_url(data["database"]["url"])
    if data["docker"]["host"]:
        data["docker"]["host"] = mask_url(data["docker"]["host"])
    return data
