"""Consistency across the CLI (issue 17, "Consistency and hygiene"): help listings that are never
cut, `-f` that always means `--format`, server-name completion that reads the database without
creating anything, and the small messages that must say what really happened."""

from __future__ import annotations

import re
import socket
import sqlite3
import stat

import pytest

from tests.cli_helpers import Cli, InProcessCli, Result, database_file, error_line
from tests.test_cli_input import free_port
from tests.test_cli_users import count_traffic


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


# -- what install, list and stats print ----------------------------------------------------------
def test_install_shows_values_and_list_shows_the_trojan_sni(vpn: InProcessCli) -> None:
    shown = install_trojan(vpn, "tj").stdout
    assert "{" not in shown
    assert re.search(r"^tls\.server_name +vpn\.example\.org$", shown, flags=re.MULTILINE), shown
    assert re.search(r"^tls\.self_signed +yes$", shown, flags=re.MULTILINE), shown
    listing = ok(vpn("server", "list")).stdout.splitlines()
    assert listing[0].split() == [
        "NAME",
        "PROTOCOL",
        "ENGINE",
        "ADDRESS",
        "STATE",
        "USERS",
        "SNI/METHOD",
    ]
    assert listing[1].split()[2] == "xray"  # a new Trojan server is Xray's
    assert listing[1].split()[-1] == "vpn.example.org"
    data = ok(vpn("server", "list", "-f", "json")).json()  # scripts keep the nested settings
    assert data[0]["settings"]["tls"]["server_name"] == "vpn.example.org"


def test_stats_shows_sizes_in_units(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice"))
    count_traffic(vpn.home, "alice", 1_500_000, 2_000)
    table = ok(vpn("stats")).stdout.splitlines()
    assert table[0].split() == ["HOUR", "USER", "SERVER", "UP", "DOWN"]
    assert table[1].split()[1:] == ["alice", "s", "1.5MB", "2KB"]
    plain = ok(vpn("stats", "-f", "plain")).stdout.split("\t")  # scripts keep the bytes
    assert plain[1:] == ["alice", "s", "1500000", "2000\n"]
    rows = ok(vpn("stats", "-f", "json")).json()
    assert (rows[0]["upload_bytes"], rows[0]["download_bytes"]) == (1_500_000, 2_000)


def test_export_into_a_missing_directory_fails_with_exit_11(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice"))
    target = vpn.tmp_path / "missing" / "users.json"
    message = error_line(vpn("user", "export", "--file", str(target)), 11)
    assert message == f"Cannot write {target}: the directory {target.parent} does not exist."
    assert not target.parent.exists()
    ok(vpn("user", "export", "--file", str(vpn.tmp_path / "users.json")))
    assert stat.S_IMODE((vpn.tmp_path / "users.json").stat().st_mode) == 0o600


# -- a server's logs: no lines of our own probes, 0600, gone with the server ---------------------
def install_trojan(vpn: InProcessCli, name: str) -> Result:
    """A real Trojan server (Xray, TLS) on 127.0.0.1: a TLS inbound, where a probe that connected
    would leave a failed handshake."""
    return ok(
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
    # Only the engine's own lines (started, deprecation notes): no failed handshake of a probe.
    shown = (
        ok(vpn("server", "logs", "tj")).stdout
        + (vpn.home / "state" / "logs" / "tj.error.log").read_text()
    )
    assert shown.count("started") == 4, shown  # the install's start and the restart's, twice
    probes = [
        line for line in shown.splitlines() if re.search("handshake|eof|tls|rejected", line, re.I)
    ]
    assert probes == []


def test_server_logs_leave_out_xrays_lines_of_our_api_calls(vpn: InProcessCli) -> None:
    """Xray's API on a unix socket is an inbound, so its access log records every probe and
    poll; `server logs` shows what clients and the engine did, not what we asked it."""
    ok(
        vpn(
            "server",
            "install",
            "vless-reality",
            "--name",
            "vr",
            "--port",
            str(free_port()),
            "--listen",
            "127.0.0.1",
            "--host",
            "127.0.0.1",
            "--sni",
            "www.example.com",
        )
    )
    for _ in range(3):
        assert ok(vpn("server", "status", "vr", "-f", "json")).json()["healthy"] is True
    access = (vpn.home / "state" / "logs" / "vr.access.log").read_text().splitlines()
    assert access  # the engine does log them …
    assert all(line.endswith("[api-in -> api]") for line in access), access
    shown = ok(vpn("server", "logs", "vr")).stdout.splitlines()
    assert "Xray" in "\n".join(shown)  # … the engine's own lines are shown, ours are not
    assert not any("api-in" in line for line in shown), shown
    assert ok(vpn("server", "logs", "vr", "-n", "1")).stdout.count("\n") == 1
    modes = log_files_of(vpn, "vr")
    assert set(modes) == {"vr.log", "vr.error.log", "vr.access.log"}
    assert set(modes.values()) == {0o600}, modes


def test_a_servers_log_files_are_0600_and_removed_with_it(vpn: InProcessCli) -> None:
    install_trojan(vpn, "tj")
    modes = log_files_of(vpn, "tj")
    assert set(modes) == {"tj.log", "tj.error.log", "tj.access.log"}
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


# -- `vpn server status` without a name, and completing server names ------------------------------
def test_status_without_a_name_shows_every_server(vpn: InProcessCli) -> None:
    assert (
        ok(vpn("server", "status")).stderr
        == "No servers yet. Install one with `vpn server install vless-reality …`.\n"
    )
    install_trojan(vpn, "a")
    install_trojan(vpn, "b")
    ok(vpn("server", "stop", "b"))
    table = ok(vpn("server", "status")).stdout.splitlines()
    assert table[0].split() == ["NAME", "ENGINE", "STATE", "HEALTH", "PID", "MEMORY", "RUNTIME"]
    assert table[1].split()[:4] == ["a", "xray", "running", "healthy"]
    assert table[2].split() == ["b", "xray", "stopped", "-", "-", "-", "native"]
    every = ok(vpn("server", "status", "-f", "json")).json()
    assert [(s["name"], s["running"], s["healthy"]) for s in every] == [
        ("a", True, True),
        ("b", False, False),
    ]
    assert every[0] == ok(vpn("server", "status", "a", "-f", "json")).json() | {
        "rss_bytes": every[0]["rss_bytes"]  # memory moves between two reads
    }
    ok(vpn("proxy", "status"))  # no proxies among them
    assert ok(vpn("proxy", "status")).stderr == "No proxies yet.\n"


def complete(vpn: InProcessCli | Cli, line: str) -> list[str]:
    """What bash completion offers for `line` (the cursor at its end), asked as the shell asks."""
    env = {"_VPN_COMPLETE": "complete_bash", "COMP_WORDS": line}
    env["COMP_CWORD"] = str(len(line.split(" ")) - 1)
    if isinstance(vpn, Cli):
        result = vpn(env=env)
    else:  # Click ends a completion with sys.exit
        with pytest.raises(SystemExit) as done:
            vpn(env=env)
        captured = vpn.capsys.readouterr()
        result = Result(int(done.value.code or 0), captured.out, captured.err)
    assert result.code == 0, result
    assert result.stderr == "", result
    return result.stdout.split()


def test_server_names_complete_from_the_database(cli: Cli, vpn: InProcessCli) -> None:
    assert complete(cli, "vpn server status ") == []  # a real process, as from the shell
    assert not cli.home.exists()  # completing never creates the home or the database
    ok(vpn("user", "add", "alice"))
    with sqlite3.connect(database_file(vpn.home)) as conn:  # rows only: no engine needed
        now = "2026-12-07 00:00:00"
        for name in ("edge", "lab", "east"):
            conn.execute(
                "INSERT INTO servers (name, protocol, engine, runtime, listen, port, host, desired,"
                " settings, secret, created_at, updated_at) VALUES (?, 'shadowsocks', 'sing-box',"
                " 'native', '127.0.0.1', 1, '127.0.0.1', 'stopped', '{}', '{}', ?, ?)",
                (name, now, now),
            )
    assert complete(cli, "vpn server status ") == ["east", "edge", "lab"]
    assert complete(vpn, "vpn server remove e") == ["east", "edge"]
    assert complete(vpn, "vpn proxy start l") == ["lab"]
    assert complete(vpn, "vpn user link alice --server ed") == ["edge"]
    assert complete(vpn, "vpn user grant alice ") == ["alice", "east", "edge", "lab"]
    assert complete(vpn, "vpn user grant al") == ["alice"]  # users, or the server last
    assert complete(vpn, "vpn user add bob --server la") == ["lab"]
    assert complete(vpn, "vpn user show a") == ["alice"]
    assert complete(vpn, "vpn se") == ["serve", "server", "service"]
    other = vpn.tmp_path / "other"
    assert complete(vpn, f"vpn --home {other} server status ") == []
    assert not other.exists()


@pytest.mark.parametrize(
    ("family", "bind", "listen", "found"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1", True),
        (socket.AF_INET6, "::", "0.0.0.0", True),  # every address, either family
        (socket.AF_INET6, "::1", "::1", True),
        (socket.AF_INET, "127.0.0.1", "127.0.0.2", False),  # another address's port
    ],
)
def test_a_listening_port_is_found_without_connecting(
    family: int, bind: str, listen: str, found: bool
) -> None:
    from vpn_manager.engines.ports import port_listening
    from vpn_manager.specs import ServerSpec

    with socket.socket(family) as sock:
        sock.bind((bind, 0))
        spec = ServerSpec("s", "trojan", listen, sock.getsockname()[1], "127.0.0.1", {}, {})
        assert not port_listening(spec)  # bound, not listening yet
        sock.listen()
        assert port_listening(spec) is found
    assert not port_listening(spec)


@pytest.mark.parametrize(
    ("family", "bind", "listen", "found"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1", True),
        (socket.AF_INET6, "::", "0.0.0.0", True),  # every address, either family
        (socket.AF_INET, "127.0.0.1", "127.0.0.2", False),  # another address's port
    ],
)
def test_a_bound_udp_port_is_found_in_the_socket_table(
    family: int, bind: str, listen: str, found: bool
) -> None:
    """A QUIC server's port (Xray's Hysteria2): a bound UDP socket, not a TCP listener."""
    from vpn_manager.engines.ports import udp_bound

    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        port = sock.getsockname()[1]
        assert udp_bound(listen, port) is found
    assert udp_bound(listen, port) is False
    with socket.socket(socket.AF_INET) as tcp:  # a TCP listener is not a UDP port
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        assert udp_bound("127.0.0.1", tcp.getsockname()[1]) is False
    assert udp_bound("vpn.example.org", port) is None  # a name: the table cannot tell
