"""`vpn user …`: create, list, show, change, enable/disable, delete, export and import users.

The commands live by job: the records and their limits (records.py), access to servers
(grants.py), links and client configs (access.py), export and import (transfer.py). This module
only gathers them into the group, in the order `vpn user --help` lists them.
"""

from __future__ import annotations

import typer

from vpn_manager.cli.users import access, grants, records, transfer

app = typer.Typer(help="Create, list, change and remove users.", no_args_is_help=True)

for name, command in (
    ("add", records.add),
    ("list", records.list_users),
    ("show", records.show),
    ("update", records.update),
    ("enable", records.enable),
    ("disable", records.disable),
    ("delete", records.delete),
    ("rotate-token", records.rotate_token),
    ("export", transfer.export),
    ("import", transfer.import_users),
    ("grant", grants.grant),
    ("revoke", grants.revoke),
    ("link", access.link),
    ("config", access.client_config),
    ("reset-usage", records.reset_usage),
):
    app.command(name)(command)
