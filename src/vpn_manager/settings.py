"""Settings and paths. This module alone knows where things live.

Precedence, highest first: command-line flags, environment (`VPN_` prefix, `__` for nesting), the
TOML config file (`$VPN_CONFIG`, else `config.toml` in the config directory), built-in defaults.
`VPN_HOME=DIR` puts config, data and state all under DIR; otherwise the XDG base directories apply.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from vpn_manager.errors import ConfigError

APP_DIR = "vpn-manager"
OutputFormat = Literal["table", "json", "yaml", "plain"]


@dataclass(frozen=True)
class Paths:
    """Where config, data and state live. Everything is an absolute path."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    config_file: Path

    @property
    def database_file(self) -> Path:
        return self.data_dir / "vpn.db"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def rendered_dir(self) -> Path:
        return self.state_dir / "rendered"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        home: Path | None = None,
        config_file: Path | None = None,
    ) -> Paths:
        """Resolve directories: flags (home, config_file), then VPN_HOME/VPN_CONFIG, then XDG."""
        if home is None and env.get("VPN_HOME"):
            home = Path(env["VPN_HOME"])
        if home is not None:
            root = home.expanduser().absolute()
            config_dir, data_dir, state_dir = root / "config", root / "data", root / "state"
        else:
            user_home = Path(env.get("HOME") or Path.home())

            def xdg(var: str, fallback: str) -> Path:
                value = env.get(var)
                base = Path(value) if value and Path(value).is_absolute() else user_home / fallback
                return (base / APP_DIR).absolute()

            config_dir = xdg("XDG_CONFIG_HOME", ".config")
            data_dir = xdg("XDG_DATA_HOME", ".local/share")
            state_dir = xdg("XDG_STATE_HOME", ".local/state")
        if config_file is None and env.get("VPN_CONFIG"):
            config_file = Path(env["VPN_CONFIG"])
        config_file = (config_file or config_dir / "config.toml").expanduser().absolute()
        return cls(config_dir, data_dir, state_dir, config_file)

    def as_dict(self) -> dict[str, str]:
        return {
            "config file": str(self.config_file),
            "config dir": str(self.config_dir),
            "data dir": str(self.data_dir),
            "database": str(self.database_file),
            "keys": str(self.keys_dir),
            "rendered configs": str(self.rendered_dir),
            "logs": str(self.logs_dir),
            "state dir": str(self.state_dir),
        }


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; empty means SQLite in the data directory. "
        "PostgreSQL: postgresql+asyncpg://user:password@host/db",
    )
    busy_timeout_ms: int = Field(default=5000, ge=0, description="How long SQLite waits on a lock.")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for a server."
    )

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0]
        if scheme in ("postgresql", "postgres"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if scheme != "postgresql+asyncpg":
            raise ValueError("use a postgresql://… or sqlite:///… URL")
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


class DockerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None,
        description="The Docker engine: unix:///…, tcp://HOST:PORT, ssh://user@host or a "
        "Docker context name; empty means DOCKER_HOST or the local socket.",
    )
    images: DockerImages = DockerImages()


class Settings(BaseSettings):
    """The effective settings. Built once in the entry point and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="VPN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    output: OutputSettings = OutputSettings()
    service: ServiceSettings = ServiceSettings()
    runtime: Literal["native", "docker"] = Field(
        default="native", description="Where `vpn server install` runs new servers."
    )
    docker: DockerSettings = DockerSettings()
    timezone: str = Field(
        default="UTC", description="Zone for dates typed without one and for calendar resets."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = _TomlFileSource(settings_cls, _CURRENT_FILE.get("path"))
        return (init_settings, _FilteredEnv(settings_cls), file_source)


# The config file in use while Settings is being built (pydantic-settings builds sources in a
# classmethod, so the path is handed over here for the duration of one load_settings call).
_CURRENT_FILE: dict[str, Path | None] = {"path": None}
_NOT_SETTINGS = {"VPN_HOME", "VPN_CONFIG"}


class _FilteredEnv(EnvSettingsSource):
    """The VPN_ environment minus VPN_HOME/VPN_CONFIG, which choose paths, not settings."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {k: v for k, v in self.env_vars.items() if k.upper() not in _NOT_SETTINGS}


class _TomlFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data: dict[str, Any] = read_config_file(path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


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
    _CURRENT_FILE["path"] = paths.config_file
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise _explain(exc, paths.config_file, env if env is not None else os.environ) from None
    finally:
        _CURRENT_FILE["path"] = None


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


_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:password|passwd|pwd|secret)=)[^&]*")


def mask_url(url: str) -> str:
    """Hide the password in a database URL, in the user part or in the query string."""
    parts = urlsplit(url)
    masked = parts
    if parts.password is not None:
        credentials, host = parts.netloc.rsplit("@", 1)
        masked = masked._replace(netloc=f"{credentials.split(':', 1)[0]}:***@{host}")
    if parts.query:
        masked = masked._replace(query=_SECRET_QUERY.sub(r"\1***", parts.query))
    return url if masked == parts else urlunsplit(masked)


def effective_settings(settings: Settings, *, defaults: bool = False) -> dict[str, Any]:
    """The settings as a plain dict with secrets masked (for `vpn config show`)."""
    data = (Settings.model_construct() if defaults else settings).model_dump(mode="json")
    if data["database"]["url"]:
        data["database"]["url"] = mask_url(data["database"]["url"])
    if data["docker"]["host"]:
        data["docker"]["host"] = mask_url(data["docker"]["host"])
    return data
