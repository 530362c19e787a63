"""`vpn server set --path|--host-header|--service-name|--xhttp-mode` (issue 18): the values
install takes, through the same validators; refused with one sentence (before anyone is asked)
where the server's protocol, transport or engine has no such value; a change asks first (every
user's link changes), and a refusal or a "no" leaves rows, keys, rendered files and the engine
as they were. Servers here are real Xray and sing-box processes on 127.0.0.1 in an isolated
home, on real SQLite."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from tests.cli_helpers import InProcessCli, Result, error_line
from tests.e2e.net import free_port
from tests.test_cli_server_set import Terminal, state
from tests.test_server_streams import HOSTILE, create
from vpn_manager.models.server import ServerChange

TRANSPORT_FIELDS = ("path", "service_name", "host_header", "xhttp_mode")


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def install(vpn: InProcessCli, protocol: str, name: str, *options: str) -> None:
    port = str(free_port())
    ok(
        vpn(
            "server", "install", protocol, "--name", name, "--port", port,
            "--listen", "127.0.0.1", "--host", "127.0.0.1", *options,
        )
    )  # fmt: skip


def pid(vpn: InProcessCli, name: str) -> str:
    return (vpn.home / "state" / "run" / f"{name}.pid").read_text()


def link_query(vpn: InProcessCli, user: str, server: str) -> dict[str, list[str]]:
    link = ok(vpn("user", "link", user, "--server", server)).stdout.strip()
    return parse_qs(urlsplit(link).query)


def rendered(vpn: InProcessCli, name: str) -> dict[str, Any]:
    files = list((vpn.home / "state" / "rendered" / name).rglob("*.json"))
    assert len(files) == 1, files
    loaded: dict[str, Any] = json.loads(files[0].read_text())
    return loaded


# -- the values: install's validators ----------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[("path", v) for v in [*HOSTILE, "/../x", "/a%41", "/a b", "/a?b", "no-slash"]],
        *[("service_name", v) for v in [*HOSTILE, "a?b", "a" * 101]],
        *[("host_header", v) for v in [*HOSTILE, "127.0.0.1", "a.example:443"]],
        *[("xhttp_mode", v) for v in ["fast", "", "AUTO", "auto "]],
    ],
)
def test_what_install_refuses_set_refuses(field: str, value: str) -> None:
    transport = {"service_name": "grpc", "xhttp_mode": "xhttp"}.get(field, "ws")
    with pytest.raises(ValidationError) as at_install:
        create("trojan", transport=transport, **{field: value})
    with pytest.raises(ValidationError) as at_set:
        ServerChange.model_validate({field: value})
    assert at_set.value.errors()[0]["loc"] == (field,)
    assert at_set.value.errors()[0]["msg"] == at_install.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("path", "/a.b/..c/~d_e-f//g/"),
        ("service_name", "Tunnel.v1_x-y"),
        ("host_header", "CDN.Example.net."),
        ("xhttp_mode", "stream-one"),
    ],
)
def test_what_install_takes_set_takes_alike(field: str, value: str) -> None:
    transport = {"service_name": "grpc", "xhttp_mode": "xhttp"}.get(field, "ws")
    made = create("trojan", transport=transport, **{field: value})
    change = ServerChange.model_validate({field: value})
    assert getattr(change, field) == getattr(made, field)
    assert change.new_links()  # every user's link changes: asked first


# -- refusals: one sentence, before the question, nothing changed ------------------------------
HTTP = "applies to --transport ws, httpupgrade or xhttp"
BAD_PATH = "give a path such as /ws: a / and then letters, digits or - . _ ~ /"
REFUSALS = [
    (
        "tw",
        ["--service-name", "x"],
        "--service-name applies to --transport grpc: tw is trojan over ws.",
    ),
    (
        "tw",
        ["--xhttp-mode", "auto"],
        "--xhttp-mode applies to --transport xhttp: tw is trojan over ws.",
    ),
    ("vg", ["--path", "/x"], f"--path {HTTP}: vg is vmess over grpc."),
    ("vg", ["--host-header", "cdn.example"], f"--host-header {HTTP}: vg is vmess over grpc."),
    ("tr", ["--path", "/x"], f"--path {HTTP}: tr is trojan over raw."),
    ("hy", ["--path", "/x"], "--path does not apply to hysteria2 servers."),
    ("hy", ["--service-name", "x"], "--service-name does not apply to hysteria2 servers."),
    ("ss", ["--path", "/x"], "--path does not apply to shadowsocks servers."),
    ("ss", ["--xhttp-mode", "auto"], "--xhttp-mode does not apply to shadowsocks servers."),
    ("tw", ["--path", "/a%41"], f"invalid path '/a%41': {BAD_PATH}."),
]


@pytest.fixture
def servers(vpn: InProcessCli) -> InProcessCli:
    """Trojan over ws and over raw, VMess over gRPC (TLS), Hysteria2 (Xray) and Shadowsocks
    (sing-box), each running with alice on it."""
    install(vpn, "trojan", "tw", "--transport", "ws", "--sni", "vpn.example")
    install(vpn, "trojan", "tr", "--sni", "vpn.example")
    install(vpn, "vmess", "vg", "--transport", "grpc", "--sni", "vpn.example")
    install(vpn, "hysteria2", "hy", "--sni", "vpn.example")
    install(vpn, "shadowsocks", "ss")
    ok(
        vpn(
            "user",
            "add",
            "alice",
            *[a for s in ("tw", "tr", "vg", "hy", "ss") for a in ("--server", s)],
        )
    )
    return vpn


def test_what_does_not_apply_is_refused_before_the_question(servers: InProcessCli) -> None:
    vpn = servers
    before = state(vpn)
    pids = {name: pid(vpn, name) for name in ("tw", "tr", "vg", "hy", "ss")}
    for name, args, sentence in REFUSALS:
        # Without --yes off a terminal the question would be refused (exit 10): the sentence
        # says what is wrong instead, and the user is never asked about a change that cannot be.
        assert error_line(vpn("server", "set", name, *args), 3) == sentence, args
        assert error_line(vpn("server", "set", name, *args, "--yes"), 3) == sentence, args
        assert state(vpn) == before, args
        assert {n: pid(vpn, n) for n in pids} == pids, args


# -- a change: asked first, every link changes -------------------------------------------------
@pytest.mark.parametrize("answer", ["n\n", "\n"])
def test_a_no_changes_nothing(
    vpn: InProcessCli, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    install(vpn, "trojan", "tw", "--transport", "ws", "--sni", "vpn.example", "--path", "/old")
    ok(vpn("user", "add", "alice", "--server", "tw"))
    before, engine = state(vpn), pid(vpn, "tw")
    refused = vpn("server", "set", "tw", "--path", "/new")
    assert error_line(refused, 10) == (
        "Refusing to change every user's link on tw without confirmation."
    )
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    result = vpn("server", "set", "tw", "--path", "/new")
    assert result.code == 10, result
    assert "With a new path, the link of every user of tw (1) changes" in result.stdout
    assert "error: Nothing was changed." in result.stderr
    assert state(vpn) == before
    assert pid(vpn, "tw") == engine
    assert link_query(vpn, "alice", "tw")["path"] == ["/old"]


def test_a_new_path_moves_the_inbound_the_front_rule_and_every_link(vpn: InProcessCli) -> None:
    install(vpn, "trojan", "tw", "--transport", "ws", "--sni", "vpn.example", "--path", "/old")
    ok(vpn("user", "add", "alice", "bob", "--server", "tw"))
    result = ok(
        vpn("server", "set", "tw", "--path", "/new", "--host-header", "cdn.example", "--yes")
    )
    assert "The link to tw changed for 2 users: alice, bob." in result.stderr
    for user in ("alice", "bob"):
        query = link_query(vpn, user, "tw")
        assert (query["path"], query["host"]) == (["/new"], ["cdn.example"])
    text = json.dumps(rendered(vpn, "tw"))
    assert "/old" not in text
    paths = [
        rule["path"]
        for inbound in rendered(vpn, "tw")["inbounds"]
        for rule in (inbound.get("settings") or {}).get("fallbacks", [])
        if "path" in rule
    ]
    assert paths == ["/new"]  # the decoy front routes the new path to the real inbound
    assert ok(vpn("--format", "json", "server", "status", "tw")).json()["healthy"]
    # The same value again: asked (it is a path), but no link changes.
    again = ok(vpn("server", "set", "tw", "--path", "/new", "--yes"))
    assert "No user's link to tw changed." in again.stderr


@pytest.mark.parametrize(
    ("protocol", "options", "args", "key", "value"),
    [
        ("vmess", ["--transport", "grpc"], ["--service-name", "O.Tun"], "serviceName", "O.Tun"),
        ("vless", ["--transport", "xhttp"], ["--xhttp-mode", "stream-up"], "mode", "stream-up"),
        (
            "vless",
            ["--transport", "xhttp", "--security", "reality", "--dest", "127.0.0.1:9"],
            ["--path", "/x2"],
            "path",
            "/x2",
        ),
    ],
)  # fmt: skip
def test_each_transport_value_changes_on_its_transport(
    vpn: InProcessCli, protocol: str, options: list[str], args: list[str], key: str, value: str
) -> None:
    install(vpn, protocol, "s", *options, "--sni", "vpn.example")
    ok(vpn("user", "add", "alice", "--server", "s"))
    result = ok(vpn("server", "set", "s", *args, "--yes"))
    assert "The link to s changed for 1 user: alice." in result.stderr
    stream = rendered(vpn, "s")["inbounds"]
    assert f'"{key}": "{value}"' in json.dumps(stream)
    # The client config made from alice's link data asks for the new value.
    config = ok(vpn("user", "config", "alice", "--server", "s", "--client", "xray")).stdout
    assert f'"{key}": "{value}"' in json.dumps(json.loads(config)["outbounds"])
