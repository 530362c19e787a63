"""`vpn service install`: run `vpn serve` under systemd."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from vpn_manager.cli.context import app_context

app = typer.Typer(help="Run `vpn serve` as a system service.", no_args_is_help=True)

UNIT_NAME = "vpn-manager.service"


def unit_text(vpn: str, home: str | None) -> str:
    environment = f"Environment=VPN_HOME={home}\n" if home else ""
    return (
        "[Unit]\n"
        "Description=vpn-manager: supervise VPN engines, count traffic, enforce limits\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={vpn} serve\n"
        f"{environment}"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "# The engines are processes of their own that outlive `vpn` commands; stopping or\n"
        "# restarting the service must not take them down with it.\n"
        "KillMode=process\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


@app.command("install")
def install(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="PATH",
            help=f"Where to write the unit (/etc/systemd/system/{UNIT_NAME}).",
        ),
    ] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the unit.")] = False,
) -> None:
    """Write a systemd unit for `vpn serve` and enable it (or print it without systemd)."""
    import subprocess

    from vpn_manager.errors import EngineError
    from vpn_manager.fsutil import atomic_write

    context = app_context(ctx)
    vpn = (
        str(Path(sys.argv[0]).resolve()) if Path(sys.argv[0]).name == "vpn" else shutil.which("vpn")
    )
    text = unit_text(
        vpn or "vpn", os.environ.get("VPN_HOME") or (str(context.home) if context.home else None)
    )
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    if print_only or (file is None and not systemd):
        sys.stdout.write(text)
        if not print_only:
            context.output().note(
                "This machine does not run systemd: save the unit above for a machine that does, "
                "or run `vpn serve` under your own supervisor."
            )
        return
    target = file or Path("/etc/systemd/system") / UNIT_NAME
    atomic_write(target, text, mode=0o644)
    context.output().note(f"Wrote {target}.")
    if file is None:
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT_NAME]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise EngineError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}.")
        context.output().note(f"Enabled and started {UNIT_NAME}.")
