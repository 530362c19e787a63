"""Where things live, and a database URL with its secrets hidden: the part of the settings that
needs no pydantic, so that the service process (daemon/main.py) can run without it."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from vpn_manager.errors import InvalidInput

APP_DIR = "vpn-manager"


def entry(parent: Path, name: str, suffix: str = "") -> Path:
    """`parent / (name + suffix)`, refused unless it is one entry directly inside `parent`.

    Every path built from a server's or user's name goes through here before anything is written
    or removed there, so that a name such as `..` (typed, imported, or in a database made before
    names were checked) can never reach the directory above.
    """
    leaf = f"{name}{suffix}"
    path = parent / leaf
    if (
        not name
        or leaf in (".", "..")
        or "/" in leaf
        or "\0" in leaf
        or os.path.dirname(os.path.normpath(path)) != os.path.normpath(parent)
    ):
        raise InvalidInput(
            f"The name {name!r} cannot be used as a file name.",
            hint="Names are 1 to 64 letters, digits, '-', '_' or '.', and not '.' or '..'.",
        )
    return path


def home_id(home: str) -> str:
    """A short name for a home (its data directory), for what it leaves in places shared with
    other homes on the machine (Docker containers and networks, the firewall's device bans)."""
    return hashlib.sha256(home.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Paths:
    """Where config, data and state live. Everything is an absolute path."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    config_file: Path

    @property
    def home_id(self) -> str:
        return home_id(str(self.data_dir))

    @property
    def database_file(self) -> Path:
        return self.data_dir / "vpn.db"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def subscription_key(self) -> Path:
        """The key subscription tokens are sealed with (services/tokens.py)."""
        return self.data_dir / "subscription.key"

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


_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:password|passwd|pwd|secret|sslpassword)=)[^&]*")


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
