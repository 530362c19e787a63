"""Settings and paths as a library: where things live, and precedence (flag > environment >
config file > default) as load_settings computes it. The CLI's view is in test_cli_config.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_helpers import write_config
from vpn_manager.errors import ConfigError
from vpn_manager.settings import Paths, effective_settings, load_settings, mask_url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VPN_* or XDG_* variables from the outer environment."""
    for key in list(os.environ):
        if key.startswith(("VPN_", "XDG_")):
            monkeypatch.delenv(key)
    return monkeypatch


# -- paths ----------------------------------------------------------------------------------------
def test_vpn_home_puts_everything_under_it(tmp_path: Path) -> None:
    home = tmp_path / "vpnhome"
    paths = Paths.from_env({"VPN_HOME": str(home), "HOME": str(tmp_path / "user")})
    assert paths == Paths(
        config_dir=home / "config",
        data_dir=home / "data",
        state_dir=home / "state",
        config_file=home / "config" / "config.toml",
    )
    assert paths.database_file == home / "data" / "vpn.db"
    assert paths.keys_dir == home / "data" / "keys"
    assert paths.rendered_dir == home / "state" / "rendered"
    assert paths.logs_dir == home / "state" / "logs"


def test_relative_vpn_home_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = Paths.from_env({"VPN_HOME": "rel/home"})
    assert paths.config_dir == tmp_path / "rel" / "home" / "config"
    assert paths.config_file.is_absolute()


def test_vpn_home_beats_xdg_and_the_home_flag_beats_vpn_home(tmp_path: Path) -> None:
    env = {
        "VPN_HOME": str(tmp_path / "env-home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "HOME": str(tmp_path / "user"),
    }
    assert Paths.from_env(env).config_dir == tmp_path / "env-home" / "config"
    flagged = Paths.from_env(env, home=tmp_path / "flag-home")
    assert flagged.data_dir == tmp_path / "flag-home" / "data"


def test_xdg_directories_when_vpn_home_is_unset(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path / "user"),
        "XDG_CONFIG_HOME": str(tmp_path / "xc"),
        "XDG_DATA_HOME": str(tmp_path / "xd"),
        "XDG_STATE_HOME": str(tmp_path / "xs"),
    }
    assert Paths.from_env(env) == Paths(
        config_dir=tmp_path / "xc" / "vpn-manager",
        data_dir=tmp_path / "xd" / "vpn-manager",
        state_dir=tmp_path / "xs" / "vpn-manager",
        config_file=tmp_path / "xc" / "vpn-manager" / "config.toml",
    )


def test_xdg_defaults_under_home(tmp_path: Path) -> None:
    user = tmp_path / "user"
    # XDG says relative values are invalid and must be ignored.
    paths = Paths.from_env({"HOME": str(user), "XDG_DATA_HOME": "relative/data"})
    assert paths == Paths(
        config_dir=user / ".config" / "vpn-manager",
        data_dir=user / ".local" / "share" / "vpn-manager",
        state_dir=user / ".local" / "state" / "vpn-manager",
        config_file=user / ".config" / "vpn-manager" / "config.toml",
    )


def test_vpn_config_and_the_config_flag(tmp_path: Path) -> None:
    env = {"VPN_HOME": str(tmp_path / "h"), "VPN_CONFIG": str(tmp_path / "other.toml")}
    assert Paths.from_env(env).config_file == tmp_path / "other.toml"
    assert Paths.from_env(env).config_dir == tmp_path / "h" / "config"
    flagged = Paths.from_env(env, config_file=tmp_path / "flag.toml")
    assert flagged.config_file == tmp_path / "flag.toml"


# -- precedence, in-process through load_settings ------------------------------------------------
@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (None, None, None, "table"),
        ("yaml", None, None, "yaml"),
        (None, "plain", None, "plain"),
        ("yaml", "json", None, "json"),
        ("yaml", "json", "plain", "plain"),
        (None, None, "json", "json"),
    ],
)
def test_output_format_precedence(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    in_file: str | None,
    in_env: str | None,
    flag: str | None,
    expected: str,
) -> None:
    paths = Paths.from_env({"VPN_HOME": str(tmp_path)})
    if in_file:
        write_config(tmp_path, f'[output]\nformat = "{in_file}"\n')
    if in_env:
        clean_env.setenv("VPN_OUTPUT__FORMAT", in_env)
    settings = load_settings(paths, {"output.format": flag})
    assert settings.output.format == expected


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (None, None, None, 15000),
        (7, None, None, 7),
        (7, 99, None, 99),
        (7, 99, 1, 1),
        (None, 0, None, 0),
    ],
)
def test_busy_timeout_precedence(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    in_file: int | None,
    in_env: int | None,
    flag: int | None,
    expected: int,
) -> None:
    paths = Paths.from_env({"VPN_HOME": str(tmp_path)})
    if in_file is not None:
        write_config(tmp_path, f"[database]\nbusy_timeout_ms = {in_file}\n")
    if in_env is not None:
        clean_env.setenv("VPN_DATABASE__BUSY_TIMEOUT_MS", str(in_env))
    settings = load_settings(paths, {"database.busy_timeout_ms": flag})
    assert settings.database.busy_timeout_ms == expected
    assert settings.output.format == "table"  # the other settings keep their defaults


def test_file_and_environment_merge_per_key(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    paths = Paths.from_env({"VPN_HOME": str(tmp_path)})
    write_config(
        tmp_path,
        '[database]\nbusy_timeout_ms = 7\nconnect_timeout_s = 2.5\n\n[output]\nformat = "yaml"\n',
    )
    clean_env.setenv("VPN_DATABASE__BUSY_TIMEOUT_MS", "99")
    settings = load_settings(paths)
    assert settings.database.busy_timeout_ms == 99  # env
    assert settings.database.connect_timeout_s == 2.5  # file, same section
    assert settings.output.format == "yaml"  # file, other section


def test_vpn_home_and_vpn_config_are_not_settings(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("VPN_HOME", str(tmp_path))
    clean_env.setenv("VPN_CONFIG", str(tmp_path / "missing.toml"))
    settings = load_settings(Paths.from_env({"VPN_HOME": str(tmp_path)}))
    assert settings.output.format == "table"


def test_mask_url() -> None:
    assert (
        mask_url("postgresql://vpnadmin:pw@db:5432/vpn") == "postgresql://vpnadmin:***@db:5432/vpn"
    )
    assert mask_url("postgresql://u:p%40ss:w@h/db") == "postgresql://u:***@h/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite+aiosqlite:////tmp/x.db"


def test_effective_settings_masks_and_defaults(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path, '[database]\nurl = "postgresql://u:pw@h/db"\n[output]\nformat = "json"\n'
    )
    settings = load_settings(Paths.from_env({"VPN_HOME": str(tmp_path)}))
    assert settings.database.url == "postgresql+asyncpg://u:pw@h/db"
    shown = effective_settings(settings)
    assert shown["database"]["url"] == "postgresql+asyncpg://u:***@h/db"
    assert shown["output"]["format"] == "json"
    defaults = effective_settings(settings, defaults=True)
    assert defaults == {
        "database": {"url": None, "busy_timeout_ms": 15000, "connect_timeout_s": 5.0},
        "output": {"format": "table"},
        "service": {"poll_interval_s": 10.0, "metrics_port": 9477, "device_ban_s": 60},
        "runtime": "native",
        "docker": {
            "host": None,
            "images": {
                "xray": "ghcr.io/xtls/xray-core:latest",
                "sing_box": "ghcr.io/sagernet/sing-box:latest",
                "wireguard": "ghcr.io/wg-easy/wg-easy:15",
            },
            "ssh": {
                "config_file": None,
                "identity_file": None,
                "known_hosts_file": None,
                "persist_s": 60,
                "remote_socket": "/var/run/docker.sock",
            },
        },
        "web": {
            "listen": "127.0.0.1",
            "port": 2096,
            "public_url": None,
            "path_prefix": "",
            "cert_file": None,
            "key_file": None,
            "trusted_proxies": [],
            "title": "VPN",
        },
        "api": {"enabled": True, "listen": "127.0.0.1", "port": 2097},
        "links": {"label": "{user}@{server}"},
        "timezone": "UTC",
        "log_level": "info",
        "import_max_mb": 256,
    }


def test_load_settings_error_names_the_file_and_line(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, '[output]\n\nformat = "xml"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(Paths.from_env({"VPN_HOME": str(tmp_path)}))
    assert caught.value.exit_code == 6
    assert caught.value.message.startswith(f"Invalid setting output.format in {path} line 3: ")


def test_load_settings_error_names_the_variable(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("VPN_DATABASE__BUSY_TIMEOUT_MS", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings(Paths.from_env({"VPN_HOME": str(tmp_path)}))
    assert caught.value.message.startswith(
        "Invalid setting database.busy_timeout_ms from the environment variable "
        "VPN_DATABASE__BUSY_TIMEOUT_MS: "
    )


def test_environment_sections_as_json_and_variables_that_are_not_settings(tmp_path: Path) -> None:
    paths = Paths.from_env({"VPN_HOME": str(tmp_path)})
    env = {
        "VPN_DOCKER__IMAGES__SING_BOX": "local/sb",
        "VPN_DOCKER": '{"host": "unix:///run/a.sock", "images": {"xray": "local/xray", '
        '"sing_box": "from/json"}}',
        "VPN_DEBUG": "1",  # a switch of the CLI's, not a setting
        "Vpn_Timezone": "Asia/Tokyo",
    }
    settings = load_settings(paths, env=env)
    assert settings.docker.host == "unix:///run/a.sock"
    assert (settings.docker.images.xray, settings.docker.images.sing_box) == (
        "local/xray",
        "local/sb",
    )
    assert settings.timezone == "Asia/Tokyo"


def test_an_unknown_key_in_a_section_names_its_variable(tmp_path: Path) -> None:
    paths = Paths.from_env({"VPN_HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        load_settings(paths, env={"VPN_DATABASE__POOL": "3"})
    assert "database.pool from the environment variable VPN_DATABASE__POOL" in (
        caught.value.message
    )
