"""`vpn server …`: install, run, inspect, change and remove VPN servers.

The commands live by job: install and change (install.py), a server's life and state once
installed (lifecycle.py), its containers and a compose file (containers.py). This module only
gathers them into the group, in the order `vpn server --help` lists them.
"""

from __future__ import annotations

import typer

from vpn_manager.cli.servers import containers, install, lifecycle

app = typer.Typer(help="Install, run and remove VPN servers.", no_args_is_help=True)

for name, command in (
    ("install", install.install),
    ("list", lifecycle.list_servers),
    ("status", lifecycle.status),
    ("start", lifecycle.start),
    ("stop", lifecycle.stop),
    ("restart", lifecycle.restart),
    ("usage", lifecycle.usage),
    ("logs", lifecycle.logs),
    ("remove", lifecycle.remove),
    ("rotate-keys", install.rotate_keys),
    ("set", install.set_server),
    ("export-compose", containers.export_compose),
):
    app.command(name)(command)
