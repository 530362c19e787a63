"""`vpn service install`: the unit it writes lets `vpn serve` see the home and the settings this
command sees (the database URL above all), with every setting from the environment in a 0600
file and never in the unit; and `vpn locate` names the database actually in use.
`vpn service install web`: the same for `vpn web`, whose unit is started here as systemd would
start it; systemd-analyze checks both units."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.cli_helpers import Cli, InProcessCli, error_line, vpn_script
from tests.e2e.net import free_port

SECRET = 's3cr$t"pw`x\\'
PG_URL = "postgresql://vpnadmin:{}@db.example:5432/vpn?sslmode=require"


def pg_url() -> str:
    from urllib.parse import quote

    return PG_URL.format(quote(SECRET, safe=""))


def unit_environment(unit: str) -> dict[str, str]:
    """What systemd sets from the unit: Environment= lines, then the EnvironmentFile=."""
    found: dict[str, str] = {}
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1]).replace("%%", "%")
            name, _, setting = value.partition("=")
            found[name] = setting
        elif key == "EnvironmentFile":
            found.update(environment_file(Path(value.replace("%%", "%"))))
    return found


def environment_file(path: Path) -> dict[str, str]:
    """Read a file as systemd's EnvironmentFile= does (the quoting we write: NAME="…")."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert value[:1] == value[-1:] == '"', line
        found[name] = re.sub(r"\\(.)", r"\1", value[1:-1])
    return found


def as_the_service(cli: Cli, installed_with: Mapping[str, object], unit: str, *args: str) -> str:
    """Run `vpn ARGS` with the environment the unit gives, and none of the installer's."""
    env: dict[str, str | None] = dict.fromkeys(installed_with)
    env["VPN_HOME"] = None
    env.update(unit_environment(unit))
    result = cli(*args, env=env)
    assert result.code == 0, result
    return result.stdout


def test_the_service_sees_the_database_and_settings_of_the_installer(cli: Cli) -> None:
    other_config = cli.tmp_path / "etc" / "vpn.toml"
    other_config.parent.mkdir()
    other_config.write_text('timezone = "Asia/Tokyo"\n', encoding="utf-8")
    env = {
        "VPN_DATABASE__URL": pg_url(),
        "VPN_DATABASE__CONNECT_TIMEOUT_S": "9",
        "VPN_SERVICE__POLL_INTERVAL_S": "3",
        "VPN_DOCKER__IMAGES__XRAY": 'reg.example/x:1 "$HOME`\\',  # quoted, never expanded
        "VPN_CONFIG": str(other_config),
        "VPN_DEBUG": "1",  # not a setting: stays out
    }
    unit_file = cli.tmp_path / "vpn-manager.service"
    result = cli("service", "install", "--file", str(unit_file), env=env)
    assert result.code == 0, result
    unit = unit_file.read_text(encoding="utf-8")
    env_file = cli.home / "config" / "service.env"
    assert f"EnvironmentFile={env_file}\n" in unit
    assert f"Environment=VPN_HOME={cli.home}\n" in unit
    assert f"Environment=VPN_CONFIG={other_config}\n" in unit
    assert "DATABASE" not in unit
    assert "vpnadmin" not in unit
    assert "vpnadmin" not in result.output
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert environment_file(env_file) == {
        "VPN_DATABASE__URL": pg_url(),
        "VPN_DATABASE__CONNECT_TIMEOUT_S": "9",
        "VPN_SERVICE__POLL_INTERVAL_S": "3",
        "VPN_DOCKER__IMAGES__XRAY": 'reg.example/x:1 "$HOME`\\',
    }
    for args in (["locate", "-f", "json"], ["config", "show", "-f", "json"]):
        assert as_the_service(cli, env, unit, *args) == cli(*args, env=env).stdout
    shown = cli("locate", "-f", "json", env=env).json()
    assert (
        shown["database"] == "postgresql+asyncpg://vpnadmin:***@db.example:5432/vpn?sslmode=require"
    )


def test_xdg_directories_are_pinned_in_the_unit(cli: Cli) -> None:
    env = {
        "VPN_HOME": None,
        "XDG_CONFIG_HOME": str(cli.tmp_path / "xc"),
        "XDG_DATA_HOME": str(cli.tmp_path / "x d"),  # a space: quoted in the unit
        "VPN_TIMEZONE": "Europe/Berlin",
    }
    result = cli("service", "install", "--print", env=env)
    assert result.code == 0, result
    unit = result.stdout
    assert f'Environment="XDG_DATA_HOME={cli.tmp_path / "x d"}"\n' in unit
    assert f"Environment=XDG_STATE_HOME={cli.user_home / '.local' / 'state'}\n" in unit
    env_file = cli.tmp_path / "xc" / "vpn-manager" / "service.env"
    assert f"EnvironmentFile={env_file}\n" in unit
    assert not env_file.exists()  # --print writes nothing
    assert "VPN_TIMEZONE" in result.stderr
    assert "--print does not write" in result.stderr
    unit_file = cli.tmp_path / "unit"
    assert cli("service", "install", "--file", str(unit_file), env=env).code == 0
    for args in (["locate", "-f", "json"], ["config", "show", "-f", "json"]):
        service = as_the_service(cli, env, unit_file.read_text(encoding="utf-8"), *args)
        assert service == cli(*args, env=env).stdout


def test_no_settings_in_the_environment_no_environment_file(vpn: InProcessCli) -> None:
    unit_file = vpn.tmp_path / "unit"
    assert vpn("service", "install", "--file", str(unit_file)).code == 0
    unit = unit_file.read_text(encoding="utf-8")
    assert "EnvironmentFile" not in unit
    assert f"Environment=VPN_HOME={vpn.home}\n" in unit
    assert not (vpn.home / "config" / "service.env").exists()


def test_a_setting_the_unit_cannot_carry_is_refused(vpn: InProcessCli) -> None:
    unit_file = vpn.tmp_path / "unit"
    result = vpn(
        "service",
        "install",
        "--file",
        str(unit_file),
        env={"VPN_DOCKER__HOST": "tcp://127.0.0.1:2375\nExecStartPre=/bin/evil"},
    )
    assert error_line(result, 6) == (
        "The environment variable VPN_DOCKER__HOST holds a line break, which a systemd unit "
        "cannot carry."
    )
    assert not unit_file.exists()
    assert not (vpn.home / "config" / "service.env").exists()


def test_an_invalid_setting_is_refused_before_the_unit_is_written(vpn: InProcessCli) -> None:
    unit_file = vpn.tmp_path / "unit"
    result = vpn(
        "service", "install", "--file", str(unit_file), env={"VPN_DATABASE__URL": "mysql://h/db"}
    )
    assert error_line(result, 6).startswith("Invalid setting database.url")
    assert not unit_file.exists()


def test_locate_names_the_database_in_use(vpn: InProcessCli) -> None:
    shown = vpn("locate", "-f", "json", env={"VPN_DATABASE__URL": pg_url()}).json()
    assert (
        shown["database"] == "postgresql+asyncpg://vpnadmin:***@db.example:5432/vpn?sslmode=require"
    )
    assert "s3cr" not in vpn("locate", env={"VPN_DATABASE__URL": pg_url()}).output
    sqlite = vpn.tmp_path / "elsewhere" / "my.db"
    shown = vpn("locate", "-f", "json", env={"VPN_DATABASE__URL": f"sqlite:///{sqlite}"}).json()
    assert shown["database"] == str(sqlite)


def started_as_systemd_would(unit: str) -> subprocess.Popen[bytes]:
    """The unit's ExecStart, run with the unit's environment and little else, as systemd runs it
    (PATH, and PYTHONPATH for the code under test)."""
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    env = {name: os.environ[name] for name in ("PATH", "PYTHONPATH") if name in os.environ}
    return subprocess.Popen(
        shlex.split(exec_start.removeprefix("ExecStart=")),
        env={**env, **unit_environment(unit)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lowered(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def get(url: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"User-Agent": "v2rayNG/1.9.16"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, lowered(response.headers.items()), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, lowered(error.headers.items()), error.read().decode()


def test_the_web_unit_runs_vpn_web_with_the_installers_settings(cli: Cli) -> None:
    port = free_port()
    env = {"VPN_WEB__PORT": str(port), "VPN_WEB__TITLE": "Home VPN", "VPN_TIMEZONE": "UTC"}
    assert cli("user", "add", "alice", env=env).code == 0
    unit_file = cli.tmp_path / "vpn-manager-web.service"
    vpn = str(vpn_script())
    result = cli("service", "install", "web", "--file", str(unit_file), env=env, command=[vpn])
    assert result.code == 0, result
    unit = unit_file.read_text(encoding="utf-8")
    env_file = cli.home / "config" / "service-web.env"
    assert f"ExecStart={vpn} web\n" in unit
    assert "After=network-online.target vpn-manager.service\n" in unit
    assert f"EnvironmentFile={env_file}\n" in unit
    assert "NoNewPrivileges=yes\n" in unit
    assert "SystemCallFilter=@system-service\n" in unit
    assert "KillMode" not in unit  # `vpn web` has no engines to leave running
    assert environment_file(env_file) == env
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert not (cli.home / "config" / "service.env").exists()  # the serve unit's, untouched

    url = cli("user", "link", "alice", "--subscription", env=env).stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{port}/sub/"), url
    process = started_as_systemd_would(unit)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1].decode()
                assert time.monotonic() < deadline, "vpn web never listened"
                time.sleep(0.05)
        status, headers, _ = get(url)
        assert status == 403  # alice has no server: her status, and the installer's settings
        title = base64.b64decode(headers["profile-title"].removeprefix("base64:")).decode()
        assert title == "Home VPN: alice"
        assert get(url[:-1] + ("A" if url[-1] != "A" else "B"))[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Ended by the SIGTERM itself, after a graceful stop: a clean exit to systemd.
    assert process.returncode in (0, -signal.SIGTERM), process.communicate()[1].decode()


def test_systemd_accepts_both_units(cli: Cli) -> None:
    """systemd-analyze reads each unit as systemd would load it: no unknown directive, a bad
    value or an ExecStart that is not an executable."""
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.fail("systemd-analyze is missing: install systemd (scripts/setup --dev does)")
    units = []
    for which in ("serve", "web"):
        unit_file = cli.tmp_path / f"{which}.service"
        result = cli(
            "service", "install", which, "--file", str(unit_file), command=[str(vpn_script())]
        )
        assert result.code == 0, result
        units.append(str(unit_file))
    done = subprocess.run(
        [systemd_analyze, "verify", *units], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_web_unit_is_refused_for_a_certificate_vpn_web_cannot_use(vpn: InProcessCli) -> None:
    unit_file = vpn.tmp_path / "unit"
    env = {"VPN_WEB__CERT_FILE": str(vpn.tmp_path / "missing.pem"), "VPN_WEB__KEY_FILE": "/x"}
    result = vpn("service", "install", "web", "--file", str(unit_file), env=env)
    missing = vpn.tmp_path / "missing.pem"
    assert error_line(result, 3) == f"The certificate file {missing} does not exist."
    assert not unit_file.exists()
    assert not (vpn.home / "config" / "service-web.env").exists()
    # The serve unit does not use them.
    assert vpn("service", "install", "--file", str(unit_file), env=env).code == 0


def test_print_the_web_unit(vpn: InProcessCli) -> None:
    result = vpn("service", "install", "web", "--print", env={"VPN_WEB__PORT": "8443"})
    assert result.code == 0, result
    assert result.stdout.startswith("[Unit]\nDescription=vpn-manager: users' subscription")
    assert " web\n" in result.stdout
    assert f"{vpn.home / 'config' / 'service-web.env'}" in result.stderr
    assert not (vpn.home / "config" / "service-web.env").exists()
    wrong = vpn("service", "install", "api")
    assert (wrong.code, wrong.stdout) == (2, ""), wrong
    assert "'api' is not one of 'serve', 'web'." in wrong.stderr
