"""`vpn user link` and `vpn user config` for a user on several servers: links labelled
USER@SERVER (or the links.label setting), each under its server's name with WireGuard's `.conf`
after the share links, a warning for a user whose links do not work, `--png DIR` with one code a
server, and `config --file` written 0600 (never over a directory or a special file).

The servers are real rows with keys the real engines made (`Engine.new_server`), left stopped:
a link is written from the database, so no engine needs to run; granting one applies to the
rendered config, validated by the real engine, as for any stopped server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.cli_helpers import InProcessCli, Result, database_file, error_line, write_config
from vpn_manager.delivery.qr import png_bytes
from vpn_manager.links import parse_link

HOST = "vpn.example.com"
# name, protocol, port: listed by name in `vpn user link`, as the database lists them.
SERVERS = (("edge", "shadowsocks", 18388), ("px", "http", 13128), ("tls", "trojan", 18443))
WIREGUARD = ("wg", "wireguard", 51821)


def add_stopped_servers(
    home: Path, servers: tuple[tuple[str, str, int], ...], options: dict[str, Any] | None = None
) -> None:
    """Server rows with the keys their engines make, stopped (`desired`), in the home's database;
    `options` are install's further fields, for every server."""
    from vpn_manager import storage
    from vpn_manager.engines.ports import free_port
    from vpn_manager.engines.registry import engine_for, engine_of_new
    from vpn_manager.models.server import ServerCreate
    from vpn_manager.services.root import Services
    from vpn_manager.settings import Paths, Settings

    async def add() -> None:
        paths = Paths.from_env({}, home=home)
        services = Services.from_settings(Settings(), paths)
        try:
            for name, protocol, port in servers:
                create = ServerCreate(
                    name=name,
                    protocol=protocol,
                    port=port,
                    listen="127.0.0.1",
                    host=HOST,
                    **(options or {}),
                )
                engine = engine_for(engine_of_new(create.protocol), None)
                keys = services.servers.keys_dir(name)
                keys.mkdir(parents=True, mode=0o700)
                settings, secret = engine.new_server(create, free_port, keys)
                values = {
                    "name": name,
                    "protocol": protocol,
                    "engine": engine.name,
                    "runtime": "native",
                    "listen": "127.0.0.1",
                    "port": port,
                    "host": HOST,
                    "desired": "stopped",
                    "settings": settings,
                    "secret": secret,
                }
                async with services.db.session() as session:
                    await storage.servers.insert_server(session, values, datetime.now(UTC))
        finally:
            await services.close()

    asyncio.run(add())


def on_servers(vpn: InProcessCli, *servers: tuple[str, str, int]) -> None:
    """alice, granted each of `servers`."""
    assert vpn("user", "add", "alice").code == 0
    add_stopped_servers(vpn.home, servers)
    for name, _, _ in servers:
        assert vpn("user", "grant", "alice", name).code == 0


@pytest.fixture
def alice(vpn: InProcessCli) -> InProcessCli:
    """alice on a Shadowsocks, an HTTP proxy, a Trojan and a WireGuard server."""
    on_servers(vpn, *SERVERS, WIREGUARD)
    return vpn


def links_of(result: Result) -> dict[str, str]:
    """server -> link, from `--format json` (its shape: server, protocol, link)."""
    rows = result.json()
    assert all(set(row) == {"server", "protocol", "link"} for row in rows)
    return {row["server"]: row["link"] for row in rows}


def test_each_link_is_labelled_and_printed_under_its_server(alice: InProcessCli) -> None:
    links = links_of(alice("user", "link", "alice", "--format", "json"))
    assert list(links) == ["edge", "px", "tls", "wg"]
    for server in ("edge", "tls"):
        assert links[server].endswith(f"#alice@{server}")
        assert parse_link(links[server]).name == f"alice@{server}"
    result = alice("user", "link", "alice")
    assert result.code == 0, result
    expected = "".join(
        [
            f"edge (shadowsocks)\n{links['edge']}\n\n",
            f"px (http)\n{links['px']}\n\n",
            f"tls (trojan)\n{links['tls']}\n\n",
            f"wg (wireguard)\n{links['wg']}",  # the .conf, after every share link
        ]
    )
    assert result.stdout == expected
    assert links["wg"].startswith("[Interface]\nPrivateKey = ")
    assert result.stderr.startswith("tls: self-signed certificate:")
    assert "Warning" not in result.stderr
    alone = alice("user", "link", "alice", "--server", "edge")
    assert (alone.code, alone.stdout) == (0, links["edge"] + "\n")  # one link: as it is


def test_the_link_label_setting_names_the_links(alice: InProcessCli) -> None:
    write_config(alice.home, '[links]\nlabel = "{server} ({user})"\n')
    links = links_of(alice("user", "link", "alice", "--format", "json"))
    assert links["edge"].endswith("#edge%20%28alice%29")
    assert parse_link(links["tls"]).name == "tls (alice)"
    sing_box = alice("user", "config", "alice", "--server", "tls", "--client", "sing-box")
    assert sing_box.code == 0, sing_box
    refused = alice("user", "link", "alice", env={"VPN_LINKS__LABEL": "{user}"})
    assert "must hold {server}" in error_line(refused, 6)


def set_status(home: Path, status: str) -> None:
    """A status the service's limits give (expired, over-quota), as it writes it."""
    with sqlite3.connect(database_file(home)) as db:
        db.execute("UPDATE users SET status = ? WHERE name = 'alice'", (status,))


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("disabled", "alice is disabled: these links do not work until `vpn user enable alice`."),
        ("expired", "alice has expired: these links do not work until their expiry is moved"),
        ("over-quota", "alice is over quota: these links do not work until the next reset"),
    ],
)
def test_a_user_whose_links_do_not_work_is_warned_of(
    vpn: InProcessCli, status: str, words: str
) -> None:
    on_servers(vpn, SERVERS[0])
    link = vpn("user", "link", "alice").stdout
    if status == "disabled":
        assert vpn("user", "disable", "alice").code == 0
    else:
        set_status(vpn.home, status)
    for fmt in ("table", "json"):
        result = vpn("user", "link", "alice", "--format", fmt)
        assert result.code == 0, result
        [line] = result.stderr.splitlines()  # one line, on stderr
        assert line.startswith(f"Warning: {words}")
    assert vpn("user", "link", "alice").stdout == link  # the links themselves are as before


def test_png_dir_holds_one_code_a_server(alice: InProcessCli, tmp_path: Path) -> None:
    links = links_of(alice("user", "link", "alice", "--format", "json"))
    folder = tmp_path / "codes" / "alice"
    result = alice("user", "link", "alice", "--png", str(folder))
    assert result.code == 0, result
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"alice@{server}.png" for server in links]
    for server, link in links.items():
        png = folder / f"alice@{server}.png"
        assert png.read_bytes() == png_bytes(link)  # the code of that server's link
        assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert f"Wrote 4 QR codes to {folder}" in result.stderr
    assert all(link.rstrip("\n") in result.stdout for link in links.values())  # printed too
    # One server: a file name works as before; an existing directory gets USER@SERVER.png.
    single = tmp_path / "edge.png"
    assert alice("user", "link", "alice", "--server", "edge", "--png", str(single)).code == 0
    assert single.read_bytes() == png_bytes(links["edge"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert alice("user", "link", "alice", "--server", "wg", "--png", str(empty)).code == 0
    assert [p.name for p in empty.iterdir()] == ["alice@wg.png"]


def test_png_for_several_servers_refuses_a_file(alice: InProcessCli, tmp_path: Path) -> None:
    taken = tmp_path / "alice.png"
    taken.write_bytes(b"mine")
    message = error_line(alice("user", "link", "alice", "--png", str(taken)), 3)
    assert message == (
        f"alice is on 4 servers: --png needs a directory for their QR codes, and {taken} is "
        "not one."
    )
    assert taken.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.png", "home", "user"]


def test_config_file_is_written_0600(vpn: InProcessCli, tmp_path: Path) -> None:
    on_servers(vpn, WIREGUARD, SERVERS[2])
    printed = vpn("user", "config", "alice", "--server", "wg")
    assert printed.code == 0, printed
    old = os.umask(0o022)
    try:
        target = tmp_path / "alice-wg.conf"
        target.write_text("old")
        target.chmod(0o644)  # what a shell redirect leaves
        result = vpn("user", "config", "alice", "--server", "wg", "--file", str(target))
        fresh = tmp_path / "new" / "tls.json"
        made = vpn(
            "user", "config", "alice", "--server", "tls", "--client", "sing-box", "-o", str(fresh)
        )
    finally:
        os.umask(old)
    assert (result.code, result.stdout) == (0, ""), result
    assert result.stderr == f"Wrote the config to {target} (mode 0600).\n"
    assert target.read_text() == printed.stdout
    assert "PrivateKey = " in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert made.code == 0, made
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert '"type": "trojan"' in fresh.read_text()
    assert made.stderr.startswith("self-signed certificate:")


@pytest.mark.parametrize("kind", ["directory", "pipe (FIFO)"])
def test_config_file_refuses_a_directory_or_special_file(
    vpn: InProcessCli, tmp_path: Path, kind: str
) -> None:
    on_servers(vpn, WIREGUARD)
    target = tmp_path / "target"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)
    result = vpn("user", "config", "alice", "--server", "wg", "--file", str(target))
    assert error_line(result, 3) == f"{target} is a {kind}, not a file."
    assert (target.is_dir(), stat.S_ISFIFO(target.stat().st_mode)) == (
        kind == "directory",
        kind != "directory",
    )
    if kind == "directory":
        assert list(target.iterdir()) == []


# -- Outline access keys ------------------------------------------------------------------------


def test_outline_keys_are_given_only_for_a_cipher_outlines_apps_speak(vpn: InProcessCli) -> None:
    """`--outline` prints the ssconf:// key of an Outline server (chacha20-ietf-poly1305), which
    `vpn web` then serves; a server with a 2022 cipher (the default) gets one sentence naming
    the way out, on the CLI (exit 5, nothing printed) and on the web (409), never a key."""
    from tests.test_web_api import SUBS, listeners

    on_servers(vpn, ("edge", "shadowsocks", 18388), ("px", "http", 13128))
    add_stopped_servers(vpn.home, (("ol", "shadowsocks", 18389),), {"outline": True})
    assert vpn("user", "grant", "alice", "ol").code == 0
    write_config(vpn.home, '[web]\npublic_url = "https://vpn.example.com:2096"\n')
    url = vpn("user", "link", "alice", "--subscription", "-f", "json").json()["subscription_url"]
    token = url.rsplit("/", 1)[1]

    key = vpn("user", "link", "alice", "--outline", "--server", "ol")
    assert key.code == 0, key
    assert key.stdout == f"ssconf://vpn.example.com:2096/sub/{token}/outline/ol\n"
    assert key.stderr == ""
    as_json = vpn("user", "link", "alice", "--outline", "--server", "ol", "-f", "json").json()
    assert as_json == [{"server": "ol", "protocol": "shadowsocks", "link": key.stdout.strip()}]

    sentence = error_line(vpn("user", "link", "alice", "--outline", "--server", "edge"), 5)
    assert sentence == (
        "edge uses 2022-blake3-aes-128-gcm, a Shadowsocks 2022 cipher that Outline's apps "
        "cannot use: for Outline, install a server with `vpn server install shadowsocks "
        "--outline` or change this one's cipher with `vpn server set edge --method "
        "chacha20-ietf-poly1305`."
    )
    # Every Shadowsocks server of hers: one she cannot use in Outline refuses them all.
    assert error_line(vpn("user", "link", "alice", "--outline"), 5) == sentence
    not_ss = error_line(vpn("user", "link", "alice", "--outline", "--server", "px"), 3)
    assert not_ss == "Outline keys are for Shadowsocks servers, and px is not one."
    assert vpn("user", "revoke", "alice", "--server", "edge", "--server", "ol").code == 0
    none = error_line(vpn("user", "link", "alice", "--outline"), 3)
    assert none == "alice is on no Shadowsocks server, and Outline keys are for those."
    assert vpn("user", "grant", "alice", "--server", "edge", "--server", "ol").code == 0
    both = vpn("user", "link", "alice", "--outline", "--subscription")
    assert "give one of them" in error_line(both, 3)

    # What `vpn web` serves behind the keys: the Outline server's JSON, the 2022 one refused.
    with TestClient(listeners(), base_url=SUBS) as client:
        served = client.get(f"/sub/{token}/outline/ol")
        assert served.status_code == 200, served.text
        assert served.json()["method"] == "chacha20-ietf-poly1305"
        assert served.json()["server_port"] == 18389
        refused = client.get(f"/sub/{token}/outline/edge")
    assert (refused.status_code, refused.text) == (409, sentence + "\n")


def test_an_outline_key_over_plain_http_says_outline_needs_https(vpn: InProcessCli) -> None:
    """(An aes-256-gcm server installed without --outline gets its key too.)"""
    assert vpn("user", "add", "alice").code == 0
    add_stopped_servers(vpn.home, (("ol", "shadowsocks", 18389),), {"method": "aes-256-gcm"})
    assert vpn("user", "grant", "alice", "ol").code == 0
    write_config(vpn.home, '[web]\npublic_url = "http://vpn.example.com:2096/p"\n')
    key = vpn("user", "link", "alice", "--outline")
    assert key.code == 0, key
    assert key.stdout.startswith("ssconf://vpn.example.com:2096/p/sub/")
    assert key.stdout.endswith("/outline/ol\n")
    assert "Outline's apps fetch ssconf:// keys over HTTPS" in key.stderr
