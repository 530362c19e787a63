"""The `vpn` command line: Typer front end over the services."""
