"""The root `vpn` command: global options, command groups, and the one place where errors
become exit codes."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated

import typer

from vpn_manager import __version__
from vpn_manager.cli.context import AppContext
from vpn_manager.cli.options import FormatOption
from vpn_manager.errors import VpnError, quoted

# Command groups and top-level commands, loaded only when named on the command line: `vpn user
# list` never imports the server, monitor or service modules, and `vpn --help` imports none (it
# lists them from here). The help texts must match the modules' own.
GROUPS: dict[str, tuple[str, str]] = {
    "user": ("vpn_manager.cli.users", "Create, list, change and remove users."),
    "server": ("vpn_manager.cli.servers", "Install, run and remove VPN servers."),
    "plan": (
        "vpn_manager.cli.plans",
        "Named limits (quota, reset period, days, devices) to give users.",
    ),
    "proxy": (
        "vpn_manager.cli.proxies",
        "HTTP, SOCKS5 and mixed proxies with a password per user.",
    ),
    "monitor": ("vpn_manager.cli.monitor", "Watch the servers live."),
    "service": ("vpn_manager.cli.service", "Run `vpn serve` or `vpn web` as a system service."),
    "config": ("vpn_manager.cli.config", "Show the effective settings."),
    "api-key": ("vpn_manager.cli.apikeys", "Make, list and revoke the keys of vpn web's REST API."),
}
COMMANDS: dict[str, tuple[str, str, str]] = {
    "locate": (
        "vpn_manager.cli.config",
        "locate",
        "Print where config, database, rendered engine configs, logs and keys live.",
    ),
    "serve": (
        "vpn_manager.cli.serve",
        "serve",
        "Run the service: restart crashed engines, count traffic, enforce quotas and expiry.",
    ),
    "stats": (
        "vpn_manager.cli.stats",
        "stats",
        "Export hourly traffic per user and server (kept for 90 days).",
    ),
    "audit": (
        "vpn_manager.cli.audit",
        "audit",
        "Show who changed what through the REST API, newest first.",
    ),
    "tui": (
        "vpn_manager.cli.tui",
        "tui",
        "Open the full-screen terminal UI: dashboard, users, servers, logs and settings.",
    ),
    "web": (
        "vpn_manager.cli.web",
        "web",
        "Serve each user's subscription URL, and the REST API on its own address.",
    ),
}
INTERRUPTED = 130  # the exit code of Ctrl-C (128 + SIGINT), as shells report it
_OPTIONS_WITH_VALUES = {"--format", "-f", "--home", "--config"}

app = typer.Typer(
    name="vpn",
    help="Install and run your own VPN servers, and keep their users, traffic and limits in order.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _invoked(args: list[str]) -> str | None:
    """The group or command named on the command line (after the global options), if any."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def mount(args: list[str]) -> None:
    """Load the named group or command for real; the others only as their help line. Shell
    completion names it in the line being completed (a TAB loads one group, like a run)."""
    wanted = _invoked(_completed_line() or args)
    for name, (module, text) in GROUPS.items():
        if name == wanted:
            app.add_typer(importlib.import_module(module).app, name=name)
        else:
            app.add_typer(typer.Typer(help=text), name=name)
    for name, (module, function, text) in COMMANDS.items():
        if name == wanted:
            app.command(name)(getattr(importlib.import_module(module), function))
        else:
            app.command(name, help=text)(_not_loaded)


def _completed_line() -> list[str]:
    """The arguments of the command line a shell asks Typer to complete (bash passes it in
    COMP_WORDS, zsh, fish and PowerShell in _TYPER_COMPLETE_ARGS); none when not completing."""
    if not any(key.startswith("_VPN_COMPLETE") for key in os.environ):
        return []
    line = os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or ""
    return line.split()[1:]


def _not_loaded() -> None:  # pragma: no cover - only its help line is ever shown
    raise typer.Exit(1)


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
    app.registered_groups.clear()
    app.registered_commands.clear()
    mount(args)
    command = typer.main.get_command(app)
    whole_listings(command)
    debug = "--debug" in args or os.environ.get("VPN_DEBUG") == "1"
    if not debug:
        _quiet_threads()
    try:
        # Without standalone mode, Typer *returns* the code of a typer.Exit raised in a command
        # (`vpn tui`'s crash code) and of Ctrl-C (130) instead of raising it.
        code = command.main(args=args, prog_name="vpn", standalone_mode=False)
    except VpnError as exc:
        if debug:
            _traceback()
        _error(exc.message, exc.hint)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors (exit 2): one sentence, like the others
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group named alone: its help, as asked
            exc.show()  # type: ignore[attr-defined]
        else:
            _error(*usage_error(exc))
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nInterrupted.\n")
        return INTERRUPTED
    except Exception as exc:  # the last line of defence: one sentence, not a traceback
        if debug:
            _traceback()
        _error(
            f"Unexpected internal error: {type(exc).__name__}: {exc}",
            "Run again with --debug for the traceback, and report it.",
        )
        return 1
    if code == INTERRUPTED:
        sys.stderr.write("\nInterrupted.\n")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


USAGE_MOST = 300  # characters of a usage error's sentence
NOT_A = {  # what a value Typer's types refuse is not, said plainly
    "int_parsing": "not a whole number",
    "int_from_float": "not a whole number",
    "int_parsing_size": "too long a number",
    "float_parsing": "not a number",
    "bool_parsing": "not yes or no",
}


def usage_error(exc: typer.TyperException) -> tuple[str, str | None]:
    """A usage error Click or Typer raised (an unknown command or option, a missing argument, a
    value its type refuses) as one sentence and a hint naming the command's help, instead of
    Click's usage line, "Try …" line and blank line. The value refused is quoted, cut if long."""
    from pydantic import ValidationError

    message = exc.format_message()
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        given = first.get("input")
        if isinstance(given, str):
            detail = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
            if first["type"] in NOT_A:
                detail = f"{quoted(given)} is {NOT_A[first['type']]}"
            elif repr(given) not in detail:
                detail = f"{quoted(given)}: {detail[:1].lower()}{detail[1:]}"
            message = message.replace(str(exc), detail)
    # One line of printable text, whatever the command line held (a line break, an escape).
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))
    if len(message) > USAGE_MOST:  # a 10,000-character unknown option is not echoed whole
        message = f"{message[:USAGE_MOST]}… ({len(message):,} characters)"
    if message and message[-1] not in ".?!":
        message += "."
    context = getattr(exc, "ctx", None)
    hint = f"See `{context.command_path} --help`." if context is not None else None
    return message, hint


def whole_listings(command: object) -> None:
    """Let `--help` list every command with its whole first sentence (wrapped if long): Click
    would cut it to fit one line and end it with "…", mid-thought."""
    if not isinstance(command, typer.core.TyperGroup):
        return
    for sub in command.commands.values():
        if sub.short_help is None and sub.help:
            sub.short_help = first_sentence(sub.help)
        whole_listings(sub)


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph, as Click finds it, uncut."""
    words = " ".join(text.split("\n\n", 1)[0].split()).split(" ")
    for count, word in enumerate(words, 1):
        if word.endswith("."):
            return " ".join(words[:count])
    return " ".join(words)


def _quiet_threads() -> None:
    """A worker thread's uncaught error is one sentence, not a traceback; one that only found
    the event loop closed (a database driver's thread finishing after Ctrl-C ended the loop)
    says nothing, since "Interrupted." already says what happened."""

    def hook(args: threading.ExceptHookArgs) -> None:
        error = args.exc_value
        if isinstance(error, RuntimeError) and "Event loop is closed" in str(error):
            return
        _error(f"A background task failed: {args.exc_type.__name__}: {error}", None)

    threading.excepthook = hook


def _traceback() -> None:
    traceback.print_exc()


def _error(message: str, hint: str | None) -> None:
    colour = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    red, dim, reset = ("\033[31m", "\033[2m", "\033[0m") if colour else ("", "", "")
    sys.stderr.write(f"{red}error:{reset} {message}\n")
    if hint:
        sys.stderr.write(f"{dim}hint:{reset} {hint}\n")
