"""Usage errors Click and Typer find (a value the option's type refuses, an unknown command or
option, a missing argument): one sentence and a hint on stderr, exit 2, nothing changed; not
Click's usage line, "Try …" line and blank line. A group named alone still shows its help."""

from __future__ import annotations

import pytest

from tests.cli_helpers import (
    Cli,
    InProcessCli,
    database_file,
    error_line,
    table_rows,
)

INSTALL = ["server", "install", "shadowsocks", "--name", "s", "--port"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*INSTALL, "1e3"], "Invalid value for '--port': '1e3' is not a whole number."),
        ([*INSTALL, "abc"], "Invalid value for '--port': 'abc' is not a whole number."),
        ([*INSTALL, ""], "'' is not a whole number."),
        ([*INSTALL, "a\x1b[31mb\nc"], "'a\\x1b[31mb\\nc' is not a whole number."),
        ([*INSTALL, "9" * 10_000], "… (10,000 characters) is too long a number."),
        (["audit", "--limit", "many"], "Invalid value for '--limit': 'many' is not a whole"),
        (["--format", "xml", "user", "list"], "'xml' is not one of 'table', 'json'"),
        (["user", "frobnicate"], "No such command 'frobnicate'."),
        (["user", "list", "--bogus"], "No such option: --bogus"),
        (["user", "list", "--b\x1b[2Jogus" + "x" * 10_000], "\\x1b[2Jogus"),
        (["user", "add"], "Missing argument 'NAME'."),
        (["server", "install", "shadowsocks", "--port", "1"], "Missing option '--name'."),
        (["user", "add", "carol", "--quota"], "Option '--quota' requires an argument."),
    ],
)
def test_a_usage_error_is_one_sentence(vpn: InProcessCli, args: list[str], words: str) -> None:
    vpn("user", "add", "alice")
    before = table_rows(database_file(vpn.home), "users")
    result = vpn(*args)
    message = error_line(result, 2)
    assert words in message, message
    assert len(message) < 500, message
    assert "Usage:" not in result.stderr
    assert "Try '" not in result.stderr
    assert table_rows(database_file(vpn.home), "users") == before
    assert table_rows(database_file(vpn.home), "servers") == []


def test_the_hint_names_the_command(vpn: InProcessCli) -> None:
    result = vpn(*INSTALL, "1e3")
    assert result.stderr.splitlines()[1] == "hint: See `vpn server install --help`."


def test_in_a_real_process(cli: Cli) -> None:
    result = cli(*INSTALL, "1e3")
    assert error_line(result, 2) == "Invalid value for '--port': '1e3' is not a whole number."
    assert (
        not database_file(cli.home).exists() or table_rows(database_file(cli.home), "servers") == []
    )


def test_help_and_a_group_alone_still_show_help(vpn: InProcessCli) -> None:
    helped = vpn("server", "install", "--help")
    assert helped.code == 0
    assert helped.stdout.startswith("Usage: vpn server install [OPTIONS] {PROTOCOL}")
    alone = vpn("server")
    assert alone.code == 2
    assert "Usage: vpn server [OPTIONS] COMMAND [ARGS]..." in alone.output
    assert "install" in alone.output
