"""`vpn server set` and `vpn server rotate-keys` (issue 17): what install could set can be changed
through the same transaction, a change that gives every user a new link asks first (refused off
a terminal without --yes, exit 10), the users whose links changed are named, and every refusal
leaves the database and the rendered files as they were. Servers here are real sing-box
processes on 127.0.0.1 (and a stopped WireGuard server), in an isolated home, on real SQLite."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import (
    InProcessCli,
    Result,
    database_file,
    error_line,
    table_rows,
)
from vpn_manager.engines import tls
from vpn_manager.engines.singbox.secrets import SS_METHODS


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install(vpn: InProcessCli, protocol: str, name: str, *options: str) -> Result:
    port = str(free_port())
    return vpn(
        "server", "install", protocol, "--name", name, "--port", port, "--listen", "127.0.0.1",
        *options,
    )  # fmt: skip


def state(vpn: InProcessCli) -> dict[str, Any]:
    """Everything a refused change must leave alone: the servers' and credentials' rows, and
    every rendered and kept file (names and bytes)."""
    db = database_file(vpn.home)
    files = {}
    for top in (vpn.home / "state" / "rendered", vpn.home / "data" / "keys"):
        for path in sorted(top.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(vpn.home))] = path.read_bytes()
    return {
        "servers": table_rows(db, "servers"),
        "credentials": table_rows(db, "user_credentials"),
        "files": files,
    }


def server(vpn: InProcessCli, name: str) -> dict[str, Any]:
    found = [s for s in ok(vpn("--format", "json", "server", "list")).json() if s["name"] == name]
    assert len(found) == 1
    return dict(found[0])


def link(vpn: InProcessCli, user: str, name: str) -> str:
    return ok(vpn("user", "link", user, "--server", name)).stdout.strip()


# -- confirmation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["server", "rotate-keys", "ss"],
        ["server", "set", "ss", "--port", "PORT"],
        ["server", "set", "ss", "--method", "2022-blake3-aes-256-gcm"],
    ],
)
def test_a_change_of_every_link_is_refused_off_a_terminal_without_yes(
    vpn: InProcessCli, args: list[str]
) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    before, alice = state(vpn), link(vpn, "alice", "ss")
    args = [str(free_port()) if a == "PORT" else a for a in args]
    message = error_line(vpn(*args), 10)
    assert message == "Refusing to change every user's link on ss without confirmation."
    assert state(vpn) == before
    assert link(vpn, "alice", "ss") == alice


class Terminal(io.StringIO):
    """Typed answers on a stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code"), [("n\n", 10), ("\n", 10), ("y\n", 0)])
def test_on_a_terminal_the_question_is_asked(
    vpn: InProcessCli, monkeypatch: pytest.MonkeyPatch, answer: str, code: int
) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    before = state(vpn)
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    result = vpn("server", "rotate-keys", "ss")
    assert result.code == code, result
    assert "With new keys, the link of every user of ss (1) changes" in result.stdout
    if code:
        assert "error: Nothing was changed." in result.stderr
        assert state(vpn) == before
    else:
        assert "The link to ss changed for 1 user: alice." in result.stderr


def test_rotate_keys_with_yes_names_the_users_whose_links_changed(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "bob", "--server", "ss"))
    old = {user: link(vpn, user, "ss") for user in ("alice", "bob")}
    result = ok(vpn("server", "rotate-keys", "ss", "--yes"))
    assert "The link to ss changed for 2 users: alice, bob." in result.stderr
    for user in ("alice", "bob"):
        assert link(vpn, user, "ss") != old[user]
    assert ok(vpn("--format", "json", "server", "status", "ss")).json()["healthy"]


def test_a_server_without_users_is_changed_without_asking(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    port = free_port()
    result = ok(vpn("server", "set", "ss", "--port", str(port)))
    assert "No user's link to ss changed." in result.stderr
    assert server(vpn, "ss")["port"] == port


# -- ports -------------------------------------------------------------------------------------
def test_a_port_of_another_of_our_servers_is_refused_naming_it(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(install(vpn, "shadowsocks", "other"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    taken = server(vpn, "other")["port"]
    before = state(vpn)
    message = error_line(vpn("server", "set", "ss", "--port", str(taken), "--yes"), 5)
    assert message == f"Port {taken} is already used by server other."
    assert state(vpn) == before
    message = error_line(install(vpn, "shadowsocks", "third", "--port", str(taken)), 5)
    assert message == f"Port {taken} is already used by server other."
    assert state(vpn) == before


def test_a_new_port_moves_the_server_and_every_link(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    port = free_port()
    result = ok(vpn("server", "set", "ss", "--port", str(port), "--yes"))
    assert "The link to ss changed for 1 user: alice." in result.stderr
    assert f":{port}" in link(vpn, "alice", "ss")
    assert ok(vpn("--format", "json", "server", "status", "ss")).json()["healthy"]


# -- Shadowsocks: the method and Outline -------------------------------------------------------
def test_method_help_lists_exactly_the_accepted_methods(vpn: InProcessCli) -> None:
    import re

    for command in (["server", "install"], ["server", "set"]):
        text = " ".join(ok(vpn(*command, "--help")).stdout.split())
        listed = re.findall(r"(?:2022-blake3-)?(?:aes-\d+-gcm|chacha20[\w-]*)", text)
        assert sorted(set(listed)) == sorted(SS_METHODS), (command, listed)


def test_an_outline_server_gets_a_cipher_outline_imports(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ol", "--outline"))
    settings = server(vpn, "ol")["settings"]
    assert (settings["method"], settings["outline"]) == ("chacha20-ietf-poly1305", True)
    ok(vpn("user", "add", "alice", "--server", "ol"))
    shared = link(vpn, "alice", "ol")
    assert _userinfo(shared).startswith("chacha20-ietf-poly1305:")
    ok(install(vpn, "shadowsocks", "ol2", "--outline", "--method", "aes-256-gcm"))
    assert server(vpn, "ol2")["settings"]["method"] == "aes-256-gcm"


def test_outline_with_a_2022_cipher_is_refused(vpn: InProcessCli) -> None:
    before = state(vpn)
    result = install(vpn, "shadowsocks", "ol", "--outline", "--method", "2022-blake3-aes-128-gcm")
    assert error_line(result, 3) == (
        "Outline's apps cannot use 2022-blake3-aes-128-gcm: they speak chacha20-ietf-poly1305, "
        "aes-256-gcm, aes-128-gcm only."
    )
    assert state(vpn) == before
    message = error_line(install(vpn, "trojan", "tj", "--sni", "a.example", "--outline"), 3)
    assert "--outline applies to shadowsocks only" in message


def test_an_outline_server_keeps_a_cipher_outline_imports(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ol", "--outline"))
    ok(vpn("user", "add", "alice", "--server", "ol"))
    before = state(vpn)
    result = vpn("server", "set", "ol", "--method", "2022-blake3-aes-128-gcm", "--yes")
    assert error_line(result, 3).startswith("Outline's apps cannot use 2022-blake3-aes-128-gcm")
    assert state(vpn) == before


@pytest.mark.parametrize(
    ("start", "new", "new_keys"),
    [
        ("2022-blake3-aes-128-gcm", "aes-256-gcm", True),
        ("aes-256-gcm", "chacha20-ietf-poly1305", False),
        ("2022-blake3-aes-128-gcm", "2022-blake3-aes-256-gcm", True),
    ],
)
def test_a_new_method_gives_users_keys_that_fit_it(
    vpn: InProcessCli, start: str, new: str, new_keys: bool
) -> None:
    ok(install(vpn, "shadowsocks", "ss", "--method", start))
    ok(vpn("user", "add", "alice", "bob", "--server", "ss"))
    old = table_rows(database_file(vpn.home), "user_credentials")
    result = ok(vpn("server", "set", "ss", "--method", new, "--yes"))
    assert "The link to ss changed for 2 users: alice, bob." in result.stderr
    assert server(vpn, "ss")["settings"]["method"] == new
    now = table_rows(database_file(vpn.home), "user_credentials")
    assert (now != old) == new_keys
    for user in ("alice", "bob"):
        shared = link(vpn, user, "ss")
        assert new in shared or new in _userinfo(shared)
    assert ok(vpn("--format", "json", "server", "status", "ss")).json()["healthy"]


def test_a_new_method_that_fails_puts_every_key_back(vpn: InProcessCli) -> None:
    """The engine cannot take the new port (another program holds it): the server runs on its
    last good config again, with the users' old keys, in the database and in sing-box."""
    import json
    import socket

    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "bob", "--server", "ss"))
    rendered = vpn.home / "state" / "rendered" / "ss"
    db = database_file(vpn.home)
    before = [_rows(db, "servers", "updated_at"), _rows(db, "user_credentials")]
    config = (rendered / "config.json").read_bytes()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = str(holder.getsockname()[1])
        result = vpn("server", "set", "ss", "--method", "aes-256-gcm", "--port", taken, "--yes")
    assert "rolled back" in error_line(result, 8)
    # Put back as it was (only its time of change moved: the change was made, then undone).
    assert [_rows(db, "servers", "updated_at"), _rows(db, "user_credentials")] == before
    assert (rendered / "config.json").read_bytes() == config
    # The engine started again with the users' old keys (written for its start).
    started = json.loads((rendered / "ssm-users.json").read_text())["endpoints"]["/"]["users"]
    stored = {f"user-{row['user_id']}": json.loads(row["secret"])["password"] for row in before[1]}
    assert started == stored
    assert ok(vpn("--format", "json", "server", "status", "ss")).json()["healthy"]


def _rows(db: Path, table: str, leave_out: str = "") -> list[dict[str, Any]]:
    """A table's rows by column name, without the column `leave_out`."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db)) as conn:
        cursor = conn.execute(f'SELECT * FROM "{table}" ORDER BY id')
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor]
    return [{k: v for k, v in row.items() if k != leave_out} for row in rows]


def _userinfo(link: str) -> str:
    """The decoded METHOD:PASSWORD of a base64 SIP002 link."""
    import base64

    encoded = link.removeprefix("ss://").split("@", 1)[0]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


# -- what applies to which protocol ------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dns", "9.9.9.9"], "--dns does not apply to shadowsocks servers."),
        (["--sni", "a.example"], "--sni does not apply to shadowsocks servers."),
        (["--cert", "c.pem", "--key", "k.pem"], "--cert does not apply to shadowsocks servers."),
        (["--cert", "c.pem"], "give both --cert and --key, or neither"),
        (["--method", "rc4-md5"], "The Shadowsocks method 'rc4-md5' is not supported."),
    ],
)
def test_a_setting_the_protocol_lacks_is_refused(
    vpn: InProcessCli, args: list[str], message: str
) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    before = state(vpn)
    assert message in error_line(vpn("server", "set", "ss", *args, "--yes"), 3)
    assert state(vpn) == before


def test_nothing_to_change(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    assert error_line(vpn("server", "set", "ss"), 3) == "Nothing to change."


def test_allow_private_is_set_and_unset(vpn: InProcessCli) -> None:
    ok(install(vpn, "shadowsocks", "ss"))
    ok(vpn("user", "add", "alice", "--server", "ss"))
    result = ok(vpn("server", "set", "ss", "--allow-private"))
    assert "No user's link to ss changed." in result.stderr
    config = vpn.home / "state" / "rendered" / "ss" / "config.json"
    allowed = config.read_text()
    assert server(vpn, "ss")["settings"]["allow_private"] is True
    ok(vpn("server", "set", "ss", "--no-allow-private"))
    assert server(vpn, "ss")["settings"]["allow_private"] is False
    assert config.read_text() != allowed  # the rule that keeps users off private networks


def test_a_certificate_of_ones_own_replaces_the_self_signed_one(
    vpn: InProcessCli, tmp_path: Path
) -> None:
    ok(install(vpn, "trojan", "tj", "--sni", "vpn.example.org"))
    ok(vpn("user", "add", "alice", "--server", "tj"))
    insecure = link(vpn, "alice", "tj")
    mine = tmp_path / "mine"
    mine.mkdir()
    cert, key = tls.make_self_signed(mine, "vpn.example.org")
    kept = server(vpn, "tj")["settings"]["tls"]["cert_file"]
    result = ok(vpn("server", "set", "tj", "--cert", str(cert), "--key", str(key)))
    assert "The link to tj changed for 1 user: alice." in result.stderr
    settings = server(vpn, "tj")["settings"]["tls"]
    assert settings["self_signed"] is False
    assert Path(settings["cert_file"]).read_bytes() == cert.read_bytes()
    # The old pair stayed until the change held (a new directory, not overwritten), then went.
    assert Path(settings["cert_file"]).parent != Path(kept).parent
    assert not Path(kept).exists()
    assert link(vpn, "alice", "tj") != insecure
    assert ok(vpn("--format", "json", "server", "status", "tj")).json()["healthy"]


def test_a_new_name_gets_a_new_self_signed_certificate(vpn: InProcessCli, tmp_path: Path) -> None:
    ok(install(vpn, "trojan", "tj", "--sni", "vpn.example.org"))
    ok(vpn("user", "add", "alice", "--server", "tj"))
    old = server(vpn, "tj")["settings"]["tls"]
    result = ok(vpn("server", "set", "tj", "--sni", "new.example.org", "--yes"))
    assert "The link to tj changed for 1 user: alice." in result.stderr
    new = server(vpn, "tj")["settings"]["tls"]
    assert (new["server_name"], new["self_signed"]) == ("new.example.org", True)
    assert new["cert_sha256"] != old["cert_sha256"]
    assert "sni=new.example.org" in link(vpn, "alice", "tj")
    assert ok(vpn("--format", "json", "server", "status", "tj")).json()["healthy"]
    # A certificate of one's own names what it names: a new name needs a new one.
    mine = tmp_path / "mine"
    mine.mkdir()
    cert, key = tls.make_self_signed(mine, "new.example.org")
    ok(vpn("server", "set", "tj", "--cert", str(cert), "--key", str(key)))
    before = state(vpn)
    message = error_line(vpn("server", "set", "tj", "--sni", "third.example.org", "--yes"), 3)
    assert message == "The certificate of tj is yours, for new.example.org."
    assert state(vpn) == before


def test_a_bad_certificate_changes_nothing(vpn: InProcessCli, tmp_path: Path) -> None:
    ok(install(vpn, "trojan", "tj", "--sni", "vpn.example.org"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    before = state(vpn)
    result = vpn("server", "set", "tj", "--cert", str(bad), "--key", str(bad))
    assert error_line(result, 3)
    assert state(vpn) == before


# -- WireGuard ---------------------------------------------------------------------------------
def add_stopped_wireguard(vpn: InProcessCli, name: str) -> None:
    """A stopped WireGuard server with real keys, as install leaves one (written directly: a
    real one would make a network interface on this machine)."""
    import asyncio
    from datetime import UTC, datetime

    from vpn_manager.engines.wireguard import keys
    from vpn_manager.storage import Database
    from vpn_manager.storage.orm import ServerRow

    private, public = keys.key_pair()

    async def add() -> None:
        db = Database(f"sqlite+aiosqlite:///{database_file(vpn.home)}")
        await db.open()
        try:
            now = datetime.now(UTC)
            async with db.session() as session:
                session.add(
                    ServerRow(
                        name=name,
                        protocol="wireguard",
                        engine="wireguard",
                        runtime="native",
                        listen="0.0.0.0",
                        port=free_port(),
                        host="127.0.0.1",
                        desired="stopped",
                        settings={
                            "interface": "wgset0",
                            "subnet": "10.77.0.0/24",
                            "public_key": public,
                            "dns": "1.1.1.1",
                        },
                        secret={"private_key": private},
                        created_at=now,
                        updated_at=now,
                    )
                )
        finally:
            await db.close()

    ok(vpn("user", "list"))  # the database, made by the CLI
    asyncio.run(add())


def test_wireguard_client_settings_change_every_conf(vpn: InProcessCli) -> None:
    add_stopped_wireguard(vpn, "wg")
    ok(vpn("user", "add", "alice", "--server", "wg"))
    result = ok(
        vpn("server", "set", "wg", "--dns", "9.9.9.9", "--mtu", "1380",
            "--allowed-ips", "10.77.0.0/24")
    )  # fmt: skip
    assert "The link to wg changed for 1 user: alice." in result.stderr
    conf = ok(vpn("user", "config", "alice", "--server", "wg")).stdout
    assert "DNS = 9.9.9.9" in conf
    assert "MTU = 1380" in conf
    assert "AllowedIPs = 10.77.0.0/24" in conf
    before = state(vpn)
    message = error_line(vpn("server", "set", "wg", "--method", "aes-256-gcm", "--yes"), 3)
    assert message == "--method does not apply to wireguard servers."
    assert error_line(vpn("server", "set", "wg", "--mtu", "100"), 3)
    assert state(vpn) == before


# -- REALITY: a target and a port that do not get the server blocked ---------------------------
@pytest.mark.parametrize(
    ("name", "popular"),
    [
        ("www.microsoft.com", True),
        ("microsoft.com", True),
        ("swdist.apple.com", True),
        ("www.icloud.com.cn", True),  # Xray looks for "apple" and "icloud" anywhere
        ("gateway.icloud.com", True),
        ("www.google.com", True),
        ("vpn.example.org", False),
        ("notmicrosoft.com", False),
        ("127.0.0.1", False),
    ],
)
def test_household_names(name: str, popular: bool) -> None:
    from vpn_manager.engines.xray.targets import household_name

    assert household_name(name) is popular


def test_install_warns_of_a_popular_target_and_a_port_other_than_443(vpn: InProcessCli) -> None:
    target = f"127.0.0.1:{free_port()}"  # tests reach no real site
    result = install(vpn, "vless-reality", "edge", "--sni", "www.microsoft.com", "--dest", target)
    ok(result)
    port = server(vpn, "edge")["port"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings[0].startswith(
        "Warning: The REALITY target www.microsoft.com is a household name"
    )
    assert "TLS 1.3 with X25519 and h2" in warnings[0]
    assert warnings[1].startswith(f"Warning: Port {port}: real HTTPS sites answer on 443")
    ok(vpn("user", "add", "alice", "--server", "edge"))
    before = state(vpn)
    refused = vpn("server", "set", "edge", "--sni", "vpn.example.org")
    assert error_line(refused, 10).startswith("Refusing to change every user's link on edge")
    assert state(vpn) == before
    changed = ok(vpn("server", "set", "edge", "--sni", "vpn.example.org", "--yes"))
    assert "The link to edge changed for 1 user: alice." in changed.stderr
    assert "household name" not in changed.stderr
    assert f"Port {port}: real HTTPS sites answer on 443" in changed.stderr
    settings = server(vpn, "edge")["settings"]
    assert (settings["sni"], settings["dest"]) == ("vpn.example.org", target)  # dest was given


def test_a_loopback_target_on_443_gets_no_warning() -> None:
    from vpn_manager.engines.xray.targets import advice

    assert advice("edge", "vpn.example.org", "127.0.0.1:8443", 443) == []
    assert advice("edge", "vpn.example.org", "[::1]:443", 443) == []
    assert len(advice("edge", "vpn.example.org", "www.apple.com:443", 443)) == 1
