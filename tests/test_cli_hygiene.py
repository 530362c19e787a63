"""Consistency across the CLI (issue 17, "Consistency and hygiene"): help listings that are never
cut, `-f` that always means `--format`, server-name completion that reads the database without
creating anything, and the small messages that must say what really happened."""

from __future__ import annotations

import re
import stat

from tests import test_cli_input
from tests.cli_helpers import InProcessCli, Result
from tests.test_cli_input import free_port

vpn = test_cli_input.vpn  # the CLI in a home of the test's own; it removes the servers installed


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


# -- a server's logs: no lines of our own probes, 0600, gone with the server ---------------------
def install_trojan(vpn: InProcessCli, name: str) -> None:
    """A real sing-box Trojan server on 127.0.0.1: a TLS inbound, which logs any connection that
    ends before its handshake as an error."""
    ok(
        vpn(
            "server",
            "install",
            "trojan",
            "--name",
            name,
            "--port",
            str(free_port()),
            "--listen",
            "127.0.0.1",
            "--sni",
            "vpn.example.org",
            "--host",
            "127.0.0.1",
        )
    )


def log_files_of(vpn: InProcessCli, name: str) -> dict[str, int]:
    """The server's files in the logs directory, with their permission bits."""
    logs = vpn.home / "state" / "logs"
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in sorted(logs.glob(f"{name}.*"))}


def test_health_probes_write_nothing_into_the_engine_logs(vpn: InProcessCli) -> None:
    install_trojan(vpn, "tj")
    for _ in range(3):
        assert ok(vpn("server", "status", "tj", "-f", "json")).json()["healthy"] is True
    ok(vpn("server", "restart", "tj"))
    assert ok(vpn("server", "status", "tj", "-f", "json")).json()["port_open"] is True
    assert ok(vpn("server", "logs", "tj")).stdout == ""
    assert (vpn.home / "state" / "logs" / "tj.error.log").read_text() == ""


def test_a_servers_log_files_are_0600_and_removed_with_it(vpn: InProcessCli) -> None:
    install_trojan(vpn, "tj")
    modes = log_files_of(vpn, "tj")
    assert set(modes) == {"tj.log", "tj.error.log"}
    assert set(modes.values()) == {0o600}, modes
    refused = vpn("server", "remove", "tj")  # stdin is not a terminal: nobody to ask
    assert refused.code == 10, refused
    assert log_files_of(vpn, "tj") == modes
    ok(vpn("server", "remove", "tj", "--yes"), "Removed tj.\n")
    assert log_files_of(vpn, "tj") == {}


def test_keep_logs_keeps_them(vpn: InProcessCli) -> None:
    install_trojan(vpn, "tj")
    modes = log_files_of(vpn, "tj")
    ok(vpn("server", "remove", "tj", "--yes", "--keep-logs"))
    assert log_files_of(vpn, "tj") == modes
    assert ok(vpn("server", "list", "-f", "json")).json() == []
