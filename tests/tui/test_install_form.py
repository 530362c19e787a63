"""The install form's protocol, transport and security (issue 18): the rows each combination
needs appear and the others go, every refusal is ServerCreate's (the CLI's) in one sentence
naming the form's fields, and a real Trojan+WebSocket+TLS server installed through the form runs
on Xray, answers a WebSocket upgrade on its path and gives a plain GET its decoy (the form's
Decoy, `--decoy`), which the settings form changes (`vpn server set --decoy`)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from tests.e2e.net import BACKEND_PAGE, http_backend
from tests.tui.conftest import database, free_port, make_app, open_screen, screen_text, settle
from vpn_manager.engines.xray.decoy import PAGE
from vpn_manager.settings import Paths
from vpn_manager.tui.app import VpnApp
from vpn_manager.tui.serverform import INSTALL_FIELDS, InstallForm
from vpn_manager.tui.widgets import ErrorDialog, MenuTable

ALWAYS = ["name", "port", "listen", "host"]
CERT = ["cert_file", "key_file"]  # TLS: a certificate of yours, else a self-signed one
DECOY = ["decoy"]  # TLS on vless, trojan and vmess: what non-clients get (--decoy)


async def servers_in(paths: Paths) -> list[str]:
    from vpn_manager.services.servers import ServerService

    db = database(paths)
    try:
        return [s.name for s in await ServerService(db, paths).all()]
    finally:
        await db.close()


async def open_form(app: VpnApp, pilot: Pilot[None]) -> InstallForm:
    await open_screen(pilot, "3")
    await pilot.press("i")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, InstallForm)
    return form


async def choose(pilot: Pilot[None], form: InstallForm, **values: str) -> None:
    """Set selects and inputs in the order given (as a person fills the form in)."""
    for field, value in values.items():
        widget = form.query_one(f"#f-{field}")
        if isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = value
        await pilot.pause()


def rows_shown(form: InstallForm) -> list[str]:
    return [f for f, _, _ in INSTALL_FIELDS if form.query_one(f"#r-{f}").display]


def messages(form: InstallForm) -> dict[str, str]:
    return {
        (m.id or "").removeprefix("m-"): str(m.render())
        for m in form.query(".message.shown").results(Static)
    }


@pytest.mark.parametrize(
    ("choices", "rows", "security"),
    [
        ({}, [*ALWAYS, "sni", "dest"], None),  # vless-reality, the default
        ({"protocol": "shadowsocks"}, [*ALWAYS, "method"], None),
        ({"protocol": "hysteria2"}, [*ALWAYS, "sni", *CERT], None),
        ({"protocol": "wireguard"}, ALWAYS, None),
        ({"protocol": "trojan"}, [*ALWAYS, "transport", "security", "sni", *CERT, *DECOY], "tls"),
        ({"protocol": "vless"}, [*ALWAYS, "transport", "security", "sni", "dest"], "reality"),
        (
            {"protocol": "vless", "transport": "ws"},
            [*ALWAYS, "transport", "security", "sni", *CERT, "path", "host_header", *DECOY],
            "tls",
        ),
        (
            {"protocol": "vmess", "transport": "grpc"},
            [*ALWAYS, "transport", "security", "sni", *CERT, "service_name", *DECOY],
            "tls",
        ),
        (
            {"protocol": "vmess", "transport": "grpc", "security": "reality"},
            [*ALWAYS, "transport", "security", "sni", "dest", "service_name"],
            "reality",
        ),
        (
            {"protocol": "trojan", "transport": "xhttp"},
            [
                *ALWAYS,
                *("transport", "security", "sni", *CERT, "path", "host_header", "xhttp_mode"),
                *DECOY,
            ],
            "tls",
        ),
        (
            {"protocol": "trojan", "transport": "httpupgrade"},
            [*ALWAYS, "transport", "security", "sni", *CERT, "path", "host_header", *DECOY],
            "tls",
        ),
    ],
)
async def test_rows_follow_protocol_transport_and_security(
    home: Paths, choices: dict[str, str], rows: list[str], security: str | None
) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 45)) as pilot:
        form = await open_form(app, pilot)
        await choose(pilot, form, **choices)
        assert rows_shown(form) == rows
        if security is not None:
            assert form.query_one("#f-security", Select).value == security
        # A row that goes away takes its input out of what is sent.
        await choose(pilot, form, protocol="shadowsocks")
        assert rows_shown(form) == [*ALWAYS, "method"]


async def test_rows_come_and_go_with_the_transport(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 45)) as pilot:
        form = await open_form(app, pilot)
        await choose(pilot, form, protocol="trojan")
        seen = []
        for transport in ("ws", "grpc", "xhttp", "raw"):
            await choose(pilot, form, transport=transport)
            seen.append(
                [
                    r
                    for r in rows_shown(form)
                    if r not in {*ALWAYS, *CERT, *DECOY, "transport", "sni"}
                ]
            )
        assert seen == [
            ["security", "path", "host_header"],
            ["security", "service_name"],
            ["security", "path", "host_header", "xhttp_mode"],
            ["security"],
        ]


REFUSALS = [
    (
        {"protocol": "trojan", "transport": "grpc", "security": "reality", "sni": "a.example.com"},
        "protocol",
        'REALITY is for VLESS here: trojan links cannot carry it; use "Security" tls, or the vless '
        "protocol.",
    ),
    (
        {"protocol": "trojan", "transport": "ws", "cert_file": "/etc/ssl/vpn.pem"},
        "protocol",
        'Give both "Certificate" and "Key", or neither.',
    ),
    (
        {"protocol": "vless", "transport": "ws", "security": "reality", "sni": "a.example.com"},
        "protocol",
        'Xray refuses REALITY over ws: use "Security" tls, or "Transport" raw, grpc or xhttp.',
    ),
    (
        {"protocol": "vless", "transport": "httpupgrade", "security": "reality"},
        "protocol",
        'Xray refuses REALITY over httpupgrade: use "Security" tls, or "Transport" raw, grpc or '
        "xhttp.",
    ),
    (
        {"protocol": "vless"},
        "protocol",
        'Vless with REALITY needs "SNI", the TLS name clients present.',
    ),
    (
        {"protocol": "trojan", "transport": "ws", "path": "tunnel"},
        "path",
        "Give a path such as /ws: a / and then letters, digits or - . _ ~ /.",
    ),
    (
        {"protocol": "vmess", "transport": "grpc", "service_name": "no spaces"},
        "service_name",
        "Give a gRPC service name of letters, digits, '.', '_' or '-'.",
    ),
    (
        {"protocol": "vless", "transport": "xhttp", "host_header": "192.0.2.1"},
        "host_header",
        "Give a DNS name such as www.example.com.",
    ),
    (
        {"protocol": "vmess", "decoy": "127.0.0.1:8080"},
        "protocol",
        "VMess over raw TCP cannot have a decoy (no fallback rule tells its streams from a "
        'probe\'s): use "Transport" ws, httpupgrade, grpc or xhttp, or VLESS or Trojan.',
    ),
    (
        {"protocol": "trojan", "transport": "grpc", "decoy": "site.example"},
        "decoy",
        "Give local (a small page of the server's own) or the HOST:PORT of an http:// site, "
        "such as www.example.com:80.",
    ),
]


@pytest.mark.parametrize(("choices", "where", "sentence"), REFUSALS)
async def test_each_refusal_is_one_sentence_and_installs_nothing(
    home: Paths, choices: dict[str, str], where: str, sentence: str
) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 45)) as pilot:
        form = await open_form(app, pilot)
        await choose(pilot, form, name="x1", port=str(free_port()), **choices)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert messages(form) == {where: sentence}
    assert await servers_in(home) == []


async def test_a_hidden_row_is_not_sent(home: Paths) -> None:
    """A bad path typed for ws, then the transport changed to raw: the path is no longer
    offered, so it is not what the form refuses."""
    app = make_app(home)
    async with app.run_test(size=(100, 45)) as pilot:
        form = await open_form(app, pilot)
        await choose(pilot, form, name="x1", port="8443", protocol="vless", transport="ws")
        await choose(pilot, form, path="nope")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert set(messages(form)) == {"path"}
        await choose(pilot, form, transport="raw")
        assert "path" not in rows_shown(form)
        assert messages(form) == {}  # the hidden row's message went with it
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert messages(form) == {
            "protocol": 'Vless with REALITY needs "SNI", the TLS name clients present.'
        }
    assert await servers_in(home) == []


def websocket_upgrade(port: int, path: str, host: str) -> tuple[str, bytes]:
    """The status line a TLS WebSocket upgrade to 127.0.0.1:port gets, and the certificate the
    server presented (DER; not checked: this is the engine's answer, not a client's trust)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="vpn.example.org") as tls,
    ):
        tls.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        presented = tls.getpeercert(binary_form=True)
        assert presented is not None
        return tls.recv(4096).decode("latin-1").split("\r\n", 1)[0], presented


def https_page(port: int) -> tuple[int, bytes]:
    """What a plain HTTPS GET of / (a browser's, a probe's: no credentials) gets."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_install_a_real_trojan_ws_tls_server(stopped_after: Paths, tmp_path: Path) -> None:
    """Through the form: Trojan, WebSocket, TLS with a certificate of one's own and a decoy
    site. Xray runs it (`vpn server status`), presents that certificate, upgrades a WebSocket on
    the path and gives a plain GET the site's page; the settings form's Decoy brings back the
    local page (`vpn server set --decoy local`)."""
    with http_backend() as backend:
        await install_trojan_ws(stopped_after, tmp_path, backend)


async def install_trojan_ws(home: Paths, tmp_path: Path, backend: int) -> None:
    from vpn_manager.engines import tls
    from vpn_manager.tui.serverform import ServerSettingsForm

    port = free_port()
    cert, key = tls.make_self_signed(tmp_path, "vpn.example.org")
    app = make_app(home)
    async with app.run_test(size=(140, 45)) as pilot:
        form = await open_form(app, pilot)
        await choose(
            pilot,
            form,
            protocol="trojan",
            transport="ws",
            name="tj",
            port=str(port),
            listen="127.0.0.1",
            host="127.0.0.1",
            sni="vpn.example.org",
            path="/tunnel",
            host_header="cdn.example.org",
            cert_file=str(cert),
            key_file=str(key),
            decoy=f"127.0.0.1:{backend}",
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, (InstallForm, ErrorDialog)), screen_text(app)
        table = app.query_one("#servers-table", MenuTable)
        assert table.selected_key() == "tj"
        row = [str(cell) for cell in table.get_row("tj")]
        assert row[:4] == ["tj", "trojan+ws/tls", "xray", f"127.0.0.1:{port}"]
        assert row[4] == "running"
        assert await asyncio.to_thread(https_page, port) == (200, BACKEND_PAGE)
        # The settings form: Decoy holds the site; `local` brings back the server's own page.
        await pilot.press("e")
        await pilot.pause()
        settings = app.screen
        assert isinstance(settings, ServerSettingsForm)
        decoy = settings.query_one("#f-decoy", Input)
        assert decoy.value == f"127.0.0.1:{backend}"
        decoy.value = "local"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ErrorDialog)), screen_text(app)
        assert await asyncio.to_thread(https_page, port) == (200, PAGE)

    from vpn_manager.services.servers import ServerService

    db = database(home)
    try:
        service = ServerService(db, home)
        status = await service.status("tj")
        server = await service.get("tj")
    finally:
        await db.close()
    assert (status.running, status.healthy, status.engine) == (True, True, "xray"), status
    assert server.settings["network"] == "ws"
    assert server.settings["security"] == "tls"
    assert server.settings["path"] == "/tunnel"
    assert server.settings["host_header"] == "cdn.example.org"
    assert server.settings["tls"]["self_signed"] is False
    assert server.settings["decoy"] == "local"
    # Xray itself answers: TLS with the certificate given, then a WebSocket upgrade on the path.
    status_line, presented = websocket_upgrade(port, "/tunnel", "cdn.example.org")
    assert status_line.startswith("HTTP/1.1 101"), f"no WebSocket on /tunnel: {status_line}"
    assert presented == ssl.PEM_cert_to_DER_cert(cert.read_text())


async def test_the_list_and_settings_of_servers_with_a_transport(home: Paths) -> None:
    """PROTOCOL says the transport and security of an Xray server (`vless+grpc/reality`),
    ENGINE its engine; a Trojan server still on sing-box says `trojan`, `sing-box`. Settings of
    the REALITY one offer SNI (the target site) and Dest; of the sing-box TLS one, SNI (the
    certificate's name) alone; of an Xray TLS one, SNI and Decoy (filled in with its decoy);
    and each Xray one its transport's rows (gRPC service; Path and Host header for ws)."""
    from datetime import UTC, datetime

    from tests.tui.conftest import insert_server
    from vpn_manager.tui.serverform import ServerSettingsForm

    db = database(home)
    try:
        async with db.session() as session:
            await insert_server(
                session,
                datetime.now(UTC),
                name="grpc1",
                protocol="vless",
                engine="xray",
                port=free_port(),
                settings={
                    "network": "grpc",
                    "security": "reality",
                    "sni": "www.example.com",
                    "dest": "www.example.com:443",
                },
            )
            await insert_server(
                session,
                datetime.now(UTC),
                name="old1",
                protocol="trojan",
                port=free_port(),
                settings={"tls": {"server_name": "vpn.example.org"}},
            )
            await insert_server(
                session,
                datetime.now(UTC),
                name="ws1",
                protocol="vmess",
                engine="xray",
                port=free_port(),
                settings={
                    "network": "ws",
                    "security": "tls",
                    "path": "/w",
                    "tls": {"server_name": "vpn.example.org"},
                    "decoy": "site.example:80",
                },
            )
    finally:
        await db.close()
    app = make_app(home)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_screen(pilot, "3")
        table = app.query_one("#servers-table", MenuTable)
        cells = {key: [str(c) for c in table.get_row(key)][1:3] for key in ("grpc1", "old1")}
        assert cells == {"grpc1": ["vless+grpc/reality", "xray"], "old1": ["trojan", "sing-box"]}
        fields = {}
        for name in ("grpc1", "old1", "ws1"):
            table.move_cursor(row=table.get_row_index(name))
            await pilot.press("e")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, ServerSettingsForm)
            fields[name] = [(f, hint) for f, _, hint in form.fields()]
            if name == "ws1":
                assert form.query_one("#f-decoy", Input).value == "site.example:80"
                assert form.query_one("#f-path", Input).value == "/w"
            await pilot.press("escape")
            await pilot.pause()
    assert [f for f, _ in fields["grpc1"]] == ["port", "host", "sni", "dest", "service_name"]
    assert dict(fields["grpc1"])["sni"] == "a real site that speaks TLS 1.3"
    assert [f for f, _ in fields["old1"]] == ["port", "host", "sni"]
    assert dict(fields["old1"])["sni"] == "the name in the certificate"
    assert [f for f, _ in fields["ws1"]] == ["port", "host", "sni", "decoy", "path", "host_header"]
