"""`vpn service install`: run `vpn serve`, and `vpn web`, under systemd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.errors import ConfigError, EngineError
from vpn_manager.fsutil import atomic_write
from vpn_manager.settings import Paths, setting_variables
from vpn_manager.web import server

app = typer.Typer(help="Run `vpn serve` or `vpn web` as a system service.", no_args_is_help=True)

# Variables the Docker SDK reads when the docker.host setting is empty.
_DOCKER_VARIABLES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@+,=-]+")


class Which(StrEnum):
    SERVE = "serve"
    WEB = "web"


@dataclass(frozen=True)
class Unit:
    """A systemd unit that runs `vpn COMMAND`, and what sets it apart."""

    command: str
    name: str  # the unit file's name
    env_file: str  # its 0600 file of settings, in the config directory
    description: str
    after: str
    service: str  # its own [Service] lines, after the ones every unit has


SERVE = Unit(
    command="serve",
    name="vpn-manager.service",
    env_file="service.env",
    description="vpn-manager: supervise VPN engines, count traffic, enforce limits",
    after="network-online.target",
    service=(
        "# The engines are processes of their own that outlive `vpn` commands; stopping or\n"
        "# restarting the service must not take them down with it.\n"
        "KillMode=process\n"
    ),
)
WEB = Unit(
    command="web",
    name="vpn-manager-web.service",
    env_file="service-web.env",
    description="vpn-manager: users' subscription URLs and pages (vpn web)",
    # Started after the service when both start (at boot): it does not need it to serve.
    after=f"network-online.target {SERVE.name}",
    service=(
        "# `vpn web` answers HTTP and uses the database; it starts no engine. What it never\n"
        "# needs is taken away, by means that need no mount namespace (so the unit starts in\n"
        "# containers such as LXC too); it reads and writes files as the service does.\n"
        "NoNewPrivileges=yes\n"
        "UMask=0077\n"
        "RestrictSUIDSGID=yes\n"
        "RestrictNamespaces=yes\n"
        "RestrictRealtime=yes\n"
        "LockPersonality=yes\n"
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n"
        "SystemCallArchitectures=native\n"
        "SystemCallFilter=@system-service\n"
        "SystemCallErrorNumber=EPERM\n"
    ),
)
UNITS = {Which.SERVE: SERVE, Which.WEB: WEB}


def unit_text(
    vpn: str,
    environment: Mapping[str, str],
    environment_file: Path | None,
    unit: Unit = SERVE,
) -> str:
    """The unit: where the home is in `environment` (paths, no secrets), every setting the
    environment gave in `environment_file` (0600)."""
    lines = [f"Environment={_unit_value(name, value)}\n" for name, value in environment.items()]
    if environment_file is not None:
        lines.append(f"EnvironmentFile={_unit_escape(str(environment_file))}\n")
    return (
        "[Unit]\n"
        f"Description={unit.description}\n"
        f"After={unit.after}\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={vpn} {unit.command}\n"
        f"{''.join(lines)}"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        f"{unit.service}"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def service_environment(
    paths: Paths, env: Mapping[str, str], home: Path | None
) -> tuple[dict[str, str], dict[str, str]]:
    """What the service needs to see the home and settings this command sees: the paths for the
    unit (VPN_HOME, else the XDG directories pinned; VPN_CONFIG if it is not the default), and
    every setting variable (the database URL and its password among them) for the 0600 file."""
    unit: dict[str, str] = {}
    if home is not None or env.get("VPN_HOME"):
        unit["VPN_HOME"] = str(paths.config_dir.parent)
    else:
        unit["XDG_CONFIG_HOME"] = str(paths.config_dir.parent)
        unit["XDG_DATA_HOME"] = str(paths.data_dir.parent)
        unit["XDG_STATE_HOME"] = str(paths.state_dir.parent)
    if paths.config_file != paths.config_dir / "config.toml":
        unit["VPN_CONFIG"] = str(paths.config_file)
    secret = setting_variables(env)
    secret.update({name: env[name] for name in _DOCKER_VARIABLES if env.get(name)})
    for name, value in [*unit.items(), *secret.items()]:
        if any(char in value for char in "\n\r\0"):
            raise ConfigError(
                f"The environment variable {name} holds a line break, which a systemd unit "
                "cannot carry.",
                hint=f"Set {name} without it, or put the setting in the config file.",
            )
    return unit, secret


def environment_file_text(variables: Mapping[str, str]) -> str:
    """`NAME="value"` lines as systemd's EnvironmentFile= reads them (no expansion)."""
    escaped = {
        name: "".join("\\" + char if char in '\\"`$' else char for char in value)
        for name, value in variables.items()
    }
    return "# Written by `vpn service install`: the settings its environment gave.\n" + "".join(
        f'{name}="{value}"\n' for name, value in escaped.items()
    )


def _unit_escape(value: str) -> str:
    return value.replace("%", "%%")


def _unit_value(name: str, value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value):
        return f"{name}={value}"
    quoted = _unit_escape(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}={quoted}"'


@app.command("install")
def install(
    ctx: typer.Context,
    which: Annotated[
        Which,
        typer.Argument(
            help="serve: the service (supervision, traffic, limits); web: `vpn web`, the "
            "subscription server.",
            show_default=True,
        ),
    ] = Which.SERVE,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="PATH",
            help=f"Where to write the unit (/etc/systemd/system/{SERVE.name}, or "
            f"{WEB.name} for web).",
        ),
    ] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the unit.")] = False,
) -> None:
    """Write a systemd unit for `vpn serve` (or `vpn web`) and enable it (or print it without
    systemd)."""
    context = app_context(ctx)
    unit = UNITS[which]
    vpn = (
        str(Path(sys.argv[0]).resolve()) if Path(sys.argv[0]).name == "vpn" else shutil.which("vpn")
    )
    settings = context.settings  # a setting the service could not load is refused here, not there
    if unit is WEB:
        server.check_tls(settings.web.cert_file, settings.web.key_file)
    paths = context.paths
    unit_env, secret_env = service_environment(paths, os.environ, context.home)
    env_file = paths.config_dir / unit.env_file if secret_env else None
    text = unit_text(vpn or "vpn", unit_env, env_file, unit)
    out = context.output()
    if env_file is not None and not print_only:
        atomic_write(env_file, environment_file_text(secret_env), mode=0o600)
        out.note(f"Wrote {', '.join(secret_env)} to {env_file} (mode 0600).")
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    if print_only or (file is None and not systemd):
        sys.stdout.write(text)
        if env_file is not None and print_only:
            out.note(
                f"The unit reads {', '.join(secret_env)} from {env_file} (mode 0600), "
                "which --print does not write."
            )
        if not print_only:
            out.note(
                "This machine does not run systemd: save the unit above for a machine that does, "
                f"or run `vpn {unit.command}` under your own supervisor."
            )
        return
    target = file or Path("/etc/systemd/system") / unit.name
    atomic_write(target, text, mode=0o644)
    out.note(f"Wrote {target}.")
    if file is None:
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit.name]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise EngineError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}.")
        out.note(f"Enabled and started {unit.name}.")
