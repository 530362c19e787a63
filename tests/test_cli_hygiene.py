"""Consistency across the CLI (issue 17, "Consistency and hygiene"): help listings that are never
cut, `-f` that always means `--format`, server-name completion that reads the database without
creating anything, and the small messages that must say what really happened."""

from __future__ import annotations

import re

from tests.cli_helpers import InProcessCli, Result


def ok(result: Result, stdout: str | None = None) -> Result:
    assert result.code == 0, result
    if stdout is not None:
        assert result.stdout == stdout, result
    return result


def _commands(listing: str) -> list[str]:
    """The command names in a `--help` page's "Commands:" section (none on a command's page)."""
    if "\nCommands:\n" not in listing:
        return []
    section = listing.split("\nCommands:\n", 1)[1]
    return re.findall(r"^  (\S+)", section, flags=re.MULTILINE)


def test_no_help_listing_is_cut(vpn: InProcessCli) -> None:
    """Every group's listing, at every depth, shows each command's first sentence whole."""
    seen = 0
    todo: list[list[str]] = [[]]
    while todo:
        path = todo.pop()
        page = ok(vpn(*path, "--help")).stdout
        listing = page.split("\nCommands:\n", 1)[1] if "\nCommands:\n" in page else ""
        assert "…" not in listing, (path, listing)
        assert "..." not in listing, (path, listing)
        for name in _commands(page):
            todo.append([*path, name])
            seen += 1
    assert seen > 50  # the walk really went through the tree (groups and their commands)


def test_f_is_format_wherever_a_command_has_format(vpn: InProcessCli) -> None:
    """`-f` is `--format` on every command that has one, and nothing else anywhere: `server
    logs` follows with `--follow`/`-F`."""
    todo: list[list[str]] = [[]]
    while todo:
        path = todo.pop()
        page = ok(vpn(*path, "--help")).stdout
        for line in page.splitlines():
            if re.search(r"(^|[\s,])-f\b", line):
                assert re.match(r"\s*-f, --format\b", line), (path, line)
        todo.extend([*path, name] for name in _commands(page))
    assert "-F, --follow" in ok(vpn("server", "logs", "--help")).stdout
