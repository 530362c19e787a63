"""The root `vpn` command: global options, command groups, and the one place where errors
become exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vpn_manager import __version__
from vpn_manager.cli import config as config_cli
from vpn_manager.cli import monitor as monitor_cli
from vpn_manager.cli import proxies as proxies_cli
from vpn_manager.cli import serve as serve_cli
from vpn_manager.cli import servers as servers_cli
from vpn_manager.cli import service as service_cli
from vpn_manager.cli import stats as stats_cli
from vpn_manager.cli import users as users_cli
from vpn_manager.cli.context import AppContext
from vpn_manager.cli.options import FormatOption
from vpn_manager.errors import VpnError

app = typer.Typer(
    name="vpn",
    help="Install and run your own VPN servers, and keep their users, traffic and limits in order.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(users_cli.app, name="user")
app.add_typer(servers_cli.app, name="server")
app.add_typer(proxies_cli.app, name="proxy")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(service_cli.app, name="service")
app.add_typer(config_cli.app, name="config")
app.command("locate")(config_cli.locate)
app.command("serve")(serve_cli.serve)
app.command("stats")(stats_cli.stats)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vpn-manager {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    output_format: FormatOption = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Keep config, data and state under this directory (VPN_HOME)."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="Read settings from this TOML file (VPN_CONFIG)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    ctx.obj = AppContext(
        home=home,
        config_file=config_file,
        overrides={"output.format": output_format.value if output_format else None},
        debug=debug or (ctx.obj is not None and getattr(ctx.obj, "debug", False)),
    )


def run(args: list[str]) -> int:
    """Run the CLI and map every failure to one line on stderr and a documented exit code."""
    command = typer.main.get_command(app)
    debug = "--debug" in args or os.environ.get("VPN_DEBUG") == "1"
    try:
        command.main(args=args, prog_name="vpn", standalone_mode=False)
    except VpnError as exc:
        if debug:
            _traceback()
        _error(exc.message, exc.hint)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: Typer prints them with the usage line
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _error(exc.message, None)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nInterrupted.\n")
        return 130
    except Exception as exc:  # the last line of defence: one sentence, not a traceback
        if debug:
            _traceback()
        _error(
            f"Unexpected internal error: {type(exc).__name__}: {exc}",
            "Run again with --debug for the traceback, and report it.",
        )
        return 1
    return 0


def _traceback() -> None:
    import traceback

    traceback.print_exc()


def _error(message: str, hint: str | None) -> None:
    colour = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    red, dim, reset = ("\033[31m", "\033[2m", "\033[0m") if colour else ("", "", "")
    sys.stderr.write(f"{red}error:{reset} {message}\n")
    if hint:
        sys.stderr.write(f"{dim}hint:{reset} {hint}\n")
