"""`vpn config show` and `vpn locate`: the effective settings and where things live, as a user
sees them; precedence (flag > environment > file > default); one-line errors for a bad config
file or environment; secrets masked in every format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import (
    Cli,
    InProcessCli,
    Result,
    database_file,
    error_line,
    table_rows,
    write_config,
)

SECRET = "secretpw"
PG_URL = f"postgresql://vpnadmin:{SECRET}@db.example:5432/vpn"
PG_URL_MASKED = "postgresql+asyncpg://vpnadmin:***@db.example:5432/vpn"
FORMATS = ["table", "json", "yaml", "plain"]
DEFAULT_SHOW_TABLE = """\
database.url                 -
database.busy_timeout_ms     15000
database.connect_timeout_s   5.0
output.format                table
service.poll_interval_s      10.0
service.metrics_port         9477
service.device_ban_s         60
runtime                      native
docker.host                  -
docker.images.xray           ghcr.io/xtls/xray-core:latest
docker.images.sing_box       ghcr.io/sagernet/sing-box:latest
docker.images.wireguard      ghcr.io/wg-easy/wg-easy:15
docker.ssh.config_file       -
docker.ssh.identity_file     -
docker.ssh.known_hosts_file  -
docker.ssh.persist_s         60
docker.ssh.remote_socket     /var/run/docker.sock
web.listen                   127.0.0.1
web.port                     2096
web.public_url               -
web.path_prefix              -
web.cert_file                -
web.key_file                 -
web.trusted_proxies          -
web.title                    VPN
api.enabled                  yes
api.listen                   127.0.0.1
api.port                     2097
links.label                  {user}@{server}
timezone                     UTC
log_level                    info
import_max_mb                256
"""


def parse_show(result: Result, fmt: str) -> dict[str, str]:
    """`vpn config show` output in any format, as flat `key: text` pairs; checks it is `fmt`."""
    assert result.code == 0, result
    assert "\x1b" not in result.output
    text = result.stdout
    if fmt in ("json", "yaml"):
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        if fmt == "yaml":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
        assert isinstance(data, dict)
        flat: dict[str, str] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{sub}": str(v) for sub, v in value.items()})
            else:
                flat[key] = str(value)
        return flat
    lines = text.splitlines()
    if fmt == "plain":
        assert all(line.count("\t") == 1 for line in lines), text
        return {line.split("\t")[0]: line.split("\t")[1] for line in lines}
    assert "\t" not in text
    pairs = [re.split(r" {2,}", line, maxsplit=1) for line in lines]
    assert all(len(pair) == 2 for pair in pairs), text
    return {pair[0]: pair[1] for pair in pairs}


# -- precedence, through the CLI ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("in_file", "in_env", "args", "shown_as", "setting"),
    [
        (None, None, [], "table", "table"),
        ("yaml", None, [], "yaml", "yaml"),
        ("yaml", "json", [], "json", "json"),
        ("yaml", "json", ["--format", "plain"], "plain", "plain"),
        # A per-command --format chooses the output but is not the output.format setting.
        (
            "yaml",
            "json",
            ["--format", "plain", "config", "show", "--format", "table"],
            "table",
            "plain",
        ),
        (None, None, ["config", "show", "-f", "YAML"], "yaml", "table"),
    ],
)
def test_config_show_output_format_precedence(
    vpn: InProcessCli,
    in_file: str | None,
    in_env: str | None,
    args: list[str],
    shown_as: str,
    setting: str,
) -> None:
    if in_file:
        write_config(vpn.home, f'[output]\nformat = "{in_file}"\n')
    env = {"VPN_OUTPUT__FORMAT": in_env} if in_env else {}
    argv = args if "config" in args else [*args, "config", "show"]
    shown = parse_show(vpn(*argv, env=env), shown_as)
    assert shown["output.format"] == setting


def test_config_show_defaults_as_a_table(vpn: InProcessCli) -> None:
    result = vpn("config", "show")
    assert (result.code, result.stdout, result.stderr) == (0, DEFAULT_SHOW_TABLE, "")


def test_config_show_defaults_flag_ignores_file_and_env(vpn: InProcessCli) -> None:
    write_config(vpn.home, "[database]\nbusy_timeout_ms = 7\n")
    result = vpn("config", "show", "--defaults", env={"VPN_TIMEZONE": "Europe/Berlin"})
    assert (result.code, result.stdout, result.stderr) == (0, DEFAULT_SHOW_TABLE, "")


@pytest.mark.parametrize(
    ("in_file", "in_env", "expected"),
    [(None, None, 15000), (7, None, 7), (7, 99, 99), (None, 250, 250)],
)
def test_config_show_busy_timeout_precedence(
    vpn: InProcessCli, in_file: int | None, in_env: int | None, expected: int
) -> None:
    if in_file is not None:
        write_config(vpn.home, f"[database]\nbusy_timeout_ms = {in_file}\n")
    env = {"VPN_DATABASE__BUSY_TIMEOUT_MS": str(in_env)} if in_env is not None else {}
    data = vpn("--format", "json", "config", "show", env=env).json()
    assert data["database"]["busy_timeout_ms"] == expected


def test_config_file_format_is_used_by_user_list_in_a_real_process(cli: Cli) -> None:
    """The key flow as a user runs it: a file setting, overridden by env, overridden by a flag."""
    write_config(cli.home, '[output]\nformat = "yaml"\n')
    assert cli("user", "add", "alice").code == 0
    from_file = cli("user", "list")
    assert yaml.safe_load(from_file.stdout)[0]["name"] == "alice"
    assert from_file.stdout.startswith("- name: alice\n")
    from_env = cli("user", "list", env={"VPN_OUTPUT__FORMAT": "plain"})
    assert from_env.stdout == "alice\tactive\t0B/∞\tnever\t-\t-\n"
    from_flag = cli("--format", "json", "user", "list", env={"VPN_OUTPUT__FORMAT": "plain"})
    assert [row["name"] for row in from_flag.json()] == ["alice"]


# -- where things live ----------------------------------------------------------------------------
def expected_locations(config_dir: Path, data_dir: Path, state_dir: Path) -> dict[str, str]:
    return {
        "config file": str(config_dir / "config.toml"),
        "config dir": str(config_dir),
        "data dir": str(data_dir),
        "database": str(data_dir / "vpn.db"),
        "keys": str(data_dir / "keys"),
        "rendered configs": str(state_dir / "rendered"),
        "logs": str(state_dir / "logs"),
        "state dir": str(state_dir),
    }


def test_locate_under_vpn_home_json_and_table(cli: Cli) -> None:
    home = cli.home
    expected = expected_locations(home / "config", home / "data", home / "state")
    as_json = cli("locate", "--format", "json")
    assert as_json.stderr == ""
    assert as_json.json() == expected
    assert all(Path(value).is_absolute() for value in expected.values())
    as_table = cli("locate")
    assert as_table.code == 0
    assert parse_show(as_table, "table") == expected
    assert database_file(home) == Path(expected["database"])


def test_locate_with_relative_vpn_home(cli: Cli) -> None:
    work = cli.tmp_path / "work"
    work.mkdir()
    result = cli("--format", "json", "locate", env={"VPN_HOME": "rel"}, cwd=work)
    base = work / "rel"
    assert result.json() == expected_locations(base / "config", base / "data", base / "state")


def test_locate_with_home_flag_and_config_flag(vpn: InProcessCli) -> None:
    other = vpn.tmp_path / "flag-home"
    result = vpn(
        "--home", str(other), "--config", str(vpn.tmp_path / "c.toml"), "locate", "-f", "json"
    )
    expected = expected_locations(other / "config", other / "data", other / "state")
    expected["config file"] = str(vpn.tmp_path / "c.toml")
    assert result.json() == expected


def test_xdg_directories_in_a_real_process(cli: Cli) -> None:
    tmp = cli.tmp_path
    env = {
        "VPN_HOME": None,
        "XDG_CONFIG_HOME": str(tmp / "xc"),
        "XDG_DATA_HOME": str(tmp / "xd"),
        "XDG_STATE_HOME": str(tmp / "xs"),
    }
    config_dir, data_dir = tmp / "xc" / "vpn-manager", tmp / "xd" / "vpn-manager"
    expected = expected_locations(config_dir, data_dir, tmp / "xs" / "vpn-manager")
    assert cli("locate", "--format", "json", env=env).json() == expected
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text('[output]\nformat = "json"\n', encoding="utf-8")
    added = cli("user", "add", "alice", env=env)
    assert [row["name"] for row in added.json()] == ["alice"]  # json, from the XDG config file
    assert len(table_rows(data_dir / "vpn.db")) == 1
    assert not cli.home.exists()


def test_xdg_unset_uses_home(vpn: InProcessCli) -> None:
    user = vpn.user_home
    result = vpn("locate", "--format", "json", env={"VPN_HOME": None})
    assert result.json() == expected_locations(
        user / ".config" / "vpn-manager",
        user / ".local" / "share" / "vpn-manager",
        user / ".local" / "state" / "vpn-manager",
    )


def test_vpn_config_points_at_another_file(vpn: InProcessCli) -> None:
    write_config(vpn.home, '[output]\nformat = "yaml"\n')
    other = vpn.tmp_path / "elsewhere" / "vpn.toml"
    other.parent.mkdir()
    other.write_text('[output]\nformat = "json"\n', encoding="utf-8")
    env = {"VPN_CONFIG": str(other)}
    assert vpn("locate", "-f", "json", env=env).json()["config file"] == str(other)
    assert vpn("config", "show", env=env).json()["output"]["format"] == "json"
    # The --config flag beats VPN_CONFIG.
    flag = vpn("--config", str(vpn.home / "config" / "config.toml"), "config", "show", env=env)
    assert parse_show(flag, "yaml")["output.format"] == "yaml"


def test_missing_config_file_is_fine(vpn: InProcessCli) -> None:
    result = vpn("config", "show", env={"VPN_CONFIG": str(vpn.tmp_path / "nope.toml")})
    assert result.stdout == DEFAULT_SHOW_TABLE


# -- errors ---------------------------------------------------------------------------------------
def test_invalid_toml_in_a_real_process(cli: Cli) -> None:
    path = write_config(cli.home, '[output]\nformat = "yaml"\n[database\nbusy_timeout_ms = 1\n')
    result = cli("user", "list")
    message = error_line(result, 6)
    assert message.startswith(f"The config file {path} is not valid TOML: ")
    assert "line 3" in message
    assert result.stderr.splitlines()[1].startswith("hint: ")
    assert not database_file(cli.home).exists()


@pytest.mark.parametrize(
    ("text", "key", "line", "reason"),
    [
        ('[output]\nformat = "xml"\n', "output.format", 2, "Input should be"),
        (
            '# settings\n[database]\nbusy_timeout_ms = 10\n\n[output]\nformat = "xml"\n',
            "output.format",
            6,
            "Input should be",
        ),
        ("[database]\nbusy_timeout_ms = -5\n", "database.busy_timeout_ms", 2, "greater than"),
        ('[database]\nbusy_timeout_ms = "soon"\n', "database.busy_timeout_ms", 2, "integer"),
        ('timezone = "Mars/Olympus"\n', "timezone", 1, "unknown time zone 'Mars/Olympus'"),
        ('[database]\nurl = "mysql://u@h/db"\n', "database.url", 2, "postgresql"),
        ('[links]\nlabel = "{user}"\n', "links.label", 2, "must hold {server}"),
        ('[links]\nlabel = "{user}@{host}"\n', "links.label", 2, "not {host}"),
        ('[links]\nlabel = "{server!r}"\n', "links.label", 2, "without a format"),
        ('[links]\nlabel = "{server"\n', "links.label", 2, "a lone '{' or '}'"),
        ('[links]\nlabel = ""\n', "links.label", 2, "use 1 to 64 characters"),
    ],
)
def test_invalid_value_in_config_file(
    vpn: InProcessCli, text: str, key: str, line: int, reason: str
) -> None:
    path = write_config(vpn.home, text)
    message = error_line(vpn("user", "list"), 6)
    assert message.startswith(f"Invalid setting {key} in {path} line {line}: "), message
    assert reason in message
    assert error_line(vpn("config", "show"), 6) == message


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ('[output]\nformat = "json"\ncolour = true\n', "output.colour", 3),
        ('verbose = true\n[output]\nformat = "json"\n', "verbose", 1),
        ('[output]\nformat = "json"\n\n[servers]\nname = "x"\n', "servers", 4),
    ],
)
def test_unknown_key_in_config_file(vpn: InProcessCli, text: str, key: str, line: int) -> None:
    path = write_config(vpn.home, text)
    message = error_line(vpn("config", "show"), 6)
    assert message.startswith(f"Invalid setting {key} in {path} line {line}: "), message


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("VPN_OUTPUT__FORMAT", "xml", "Input should be"),
        ("VPN_DATABASE__BUSY_TIMEOUT_MS", "abc", "integer"),
        ("VPN_DATABASE__CONNECT_TIMEOUT_S", "0", "greater than"),
        ("VPN_TIMEZONE", "Mars/Olympus", "unknown time zone"),
        ("VPN_LOG_LEVEL", "loud", "Input should be"),
        ("VPN_LINKS__LABEL", "{0}@{server}", "not {0}"),
    ],
)
def test_invalid_environment_value(
    vpn: InProcessCli, variable: str, value: str, reason: str
) -> None:
    write_config(vpn.home, '[output]\nformat = "json"\n')  # valid: the error must not blame it
    message = error_line(vpn("user", "list", env={variable: value}), 6)
    assert f"from the environment variable {variable}: " in message, message
    assert reason in message
    assert "config.toml" not in message


def test_lowercase_environment_variable_is_not_blamed_on_the_file(vpn: InProcessCli) -> None:
    """VPN_ variables are read case-insensitively, so `vpn_output__format=xml` is
    used; the error must then name that variable, not a config file that does not even exist."""
    message = error_line(vpn("user", "list", env={"vpn_output__format": "xml"}), 6)
    assert "config.toml" not in message, message
    assert "VPN_OUTPUT__FORMAT" in message.upper(), message


def test_unreadable_config_file(vpn: InProcessCli) -> None:
    path = vpn.home / "config" / "config.toml"
    path.mkdir(parents=True)  # a directory where the file should be: unreadable even for root
    message = error_line(vpn("user", "list"), 6)
    assert message.startswith(f"Cannot read the config file {path}: "), message


def test_config_file_not_utf8(vpn: InProcessCli) -> None:
    path = vpn.home / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'[output]\nformat = "\xff\xfe"\n')
    message = error_line(vpn("config", "show"), 6)
    assert str(path) in message


# -- secrets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_config_show_masks_database_password(vpn: InProcessCli, fmt: str) -> None:
    env = {"VPN_DATABASE__URL": PG_URL}
    for argv in (["--format", fmt, "config", "show"], ["config", "show", "--format", fmt]):
        result = vpn(*argv, env=env)
        assert SECRET not in result.output
        shown = parse_show(result, fmt)
        assert shown["database.url"] == PG_URL_MASKED


def test_config_show_masks_password_from_config_file_in_a_real_process(cli: Cli) -> None:
    write_config(cli.home, f'[database]\nurl = "{PG_URL}"\n')
    for fmt in FORMATS:
        result = cli("config", "show", "--format", fmt)
        assert result.code == 0, result
        assert SECRET not in result.output
        assert PG_URL_MASKED in result.stdout


def test_config_show_masks_password_given_as_query_parameter(vpn: InProcessCli) -> None:
    """asyncpg (through SQLAlchemy) takes `?password=` from the URL's query as the password."""
    url = f"postgresql://vpnadmin@db.example:5432/vpn?password={SECRET}&sslmode=require"
    for fmt in FORMATS:
        result = vpn("config", "show", "--format", fmt, env={"VPN_DATABASE__URL": url})
        assert result.code == 0, result
        assert SECRET not in result.output, result.stdout


def test_service_unit_keeps_engines_alive_across_service_restarts(tmp_path: Path) -> None:
    from vpn_manager.cli.service import unit_text

    unit = unit_text("/opt/vpn/bin/vpn", {"VPN_HOME": str(tmp_path)}, None)
    assert "ExecStart=/opt/vpn/bin/vpn serve\n" in unit
    assert f"Environment=VPN_HOME={tmp_path}\n" in unit
    assert "KillMode=process\n" in unit
    assert "Restart=on-failure\n" in unit
    assert "WantedBy=multi-user.target\n" in unit
