"""`vpn server install vless|trojan|vmess` with a transport and a security: the defaults, and
every option or combination that does not apply (or that Xray refuses: REALITY over ws and
httpupgrade, checked by running Xray) turned down with one sentence before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.cli_helpers import InProcessCli, error_line
from tests.e2e.net import free_port
from vpn_manager.models.server import Network, Security, ServerCreate


def create(protocol: str, **values: object) -> ServerCreate:
    return ServerCreate.model_validate({"name": "s", "protocol": protocol, "port": 8443, **values})


def test_defaults() -> None:
    vless = create("vless", sni="www.example.com")
    assert (vless.transport, vless.security) == (Network.RAW, Security.REALITY)
    assert create("vless", transport="ws").security is Security.TLS
    assert create("vless", transport="grpc").security is Security.TLS
    for protocol in ("trojan", "vmess"):
        made = create(protocol)
        assert (made.transport, made.security) == (Network.RAW, Security.TLS)
    reality = create("vless", transport="xhttp", security="reality", sni="www.example.com")
    assert reality.reality
    # vless-reality stays what it was: no transport options.
    old = create("vless-reality", sni="www.example.com")
    assert (old.transport, old.security, old.reality) == (None, None, True)


REFUSED = [
    ("vless", {"transport": "ws", "security": "reality", "sni": "a.example"}, "refuses reality"),
    ("vless", {"transport": "httpupgrade", "security": "reality"}, "refuses reality"),
    # Xray runs them, but no Trojan or VMess link can carry REALITY: no user could get one.
    ("trojan", {"transport": "raw", "security": "reality", "sni": "a.example"}, "for vless here"),
    ("vmess", {"transport": "grpc", "security": "reality", "sni": "a.example"}, "for vless here"),
    ("vless", {"transport": "raw", "security": "reality"}, "needs --sni"),
    ("vmess", {"transport": "raw", "path": "/x"}, "--path applies to --transport ws"),
    ("vless", {"transport": "grpc", "host_header": "cdn.example"}, "--host-header applies"),
    ("trojan", {"transport": "ws", "service_name": "x"}, "--service-name applies to --transport"),
    ("vmess", {"transport": "ws", "xhttp_mode": "packet-up"}, "--xhttp-mode applies"),
    ("vmess", {"transport": "xhttp", "xhttp_mode": "fast"}, "give one of auto, packet-up"),
    ("vless", {"transport": "ws", "path": "no-slash"}, "give a path"),
    ("trojan", {"transport": "quic"}, "transport"),
    ("trojan", {"security": "none"}, "security"),
    ("trojan", {"dest": "a.example:443"}, "--dest applies to reality servers only"),
    ("vless", {"sni": "a.example", "cert_file": "/c", "key_file": "/k"}, "reality uses no"),
    ("shadowsocks", {"transport": "ws"}, "--transport applies to vless, trojan and vmess"),
    ("vless-reality", {"sni": "a.example", "transport": "grpc"}, "--transport applies"),
    ("hysteria2", {"path": "/x", "host_header": "a.example"}, "--path, --host-header apply"),
]


@pytest.mark.parametrize(("protocol", "values", "words"), REFUSED)
def test_what_does_not_apply_is_refused(
    protocol: str, values: dict[str, object], words: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        create(protocol, **values)
    assert words.lower() in str(refused.value).lower()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["vless", "--transport", "ws", "--security", "reality", "--sni", "a.example"], "ws"),
        (["trojan", "--transport", "raw", "--path", "/p"], "--path"),
        (["vmess", "--transport", "grpc", "--xhttp-mode", "auto"], "--xhttp-mode"),
        (["trojan", "--security", "reality", "--sni", "a.example"], "trojan links cannot carry"),
        (
            ["trojan", "--transport", "grpc", "--security", "reality", "--sni", "a.example"],
            "trojan links cannot carry",
        ),
        (
            ["vmess", "--transport", "xhttp", "--security", "reality", "--sni", "a.example"],
            "vmess links cannot carry",
        ),
        (["shadowsocks", "--transport", "grpc"], "--transport"),
    ],
)
def test_the_cli_refuses_before_anything_is_written(
    vpn: InProcessCli, args: list[str], words: str
) -> None:
    result = vpn("server", "install", *args, "--name", "s", "--port", "18443")
    assert words in error_line(result, 3)
    assert not (vpn.home / "data" / "keys" / "s").exists()
    listed = vpn("--format", "json", "server", "list")
    assert listed.code == 0
    assert listed.json() == []


# -- hostile input: one sentence, a non-zero exit, nothing written -----------------------------
LONG = "a" * 10_000
HOSTILE = ["..", ".", "a/b", "a b", "a\x01b", "a\x00b", "é", "a\nb", LONG, ""]
"""Values no name, path, service name or host header may be (as given, or after a /)."""


@pytest.mark.parametrize(
    ("field", "values"),
    [
        (
            "path",
            [f"/{v}" for v in HOSTILE if v not in ("", "a/b")]
            + [*HOSTILE, "/a?b=c", "/a#f", "/a%41", "/a%zz"],
        ),
        # `.` and `..` segments: a CDN or proxy in front resolves them away (RFC 3986).
        ("path", ["/./x", "/x/..", "/a/../b", "/x/.", "/" + "a" * 201]),
        # `'()*+!$` worked over ws but not HTTPUpgrade (Xray's client escapes them).
        ("path", ["/a'b", "/a(b)", "/a*b", "/a+b", "/a!b", "/a$b", "/a;b", "/a:b@c", "/a,b=c"]),
        ("service_name", [*HOSTILE, "a%41", "a?b", "a" * 101]),
        ("host_header", [*HOSTILE, "a..b", "-a.example", "127.0.0.1", "a.example:443"]),
        (
            "decoy",
            [
                *HOSTILE,
                "a.example:0",
                "a.example:99999",
                "a.example",
                ":80",
                "..:80",
                "a/b:80",
                "a b:80",
                "é.example:80",
                "a\x00b:80",
                "http://a.example:80",
                f"{LONG}:80",
                "a.example:-1",
                "a.example:1e3",
            ],
        ),
    ],
)
def test_hostile_transport_values_are_refused(field: str, values: list[str]) -> None:
    transport = {"service_name": "grpc"}.get(field, "ws")
    for value in values:
        with pytest.raises(ValidationError) as refused:
            create("trojan", transport=transport, sni="vpn.example", **{field: value})
        assert refused.value.errors()[0]["loc"] == (field,), value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("path", "/"),
        ("path", "/a.b/..c/~d_e-f//g/"),
        ("service_name", "a..b"),
        ("service_name", "Tunnel.v1_x-y"),
        ("host_header", "CDN.Example.net."),
        ("decoy", "127.0.0.1:8080"),
        ("decoy", "[::1]:80"),
        ("decoy", "LOCAL"),
    ],
)
def test_what_clients_can_ask_for_is_accepted(field: str, value: str) -> None:
    transport = {"service_name": "grpc"}.get(field, "ws")
    made = create("trojan", transport=transport, sni="vpn.example", **{field: value})
    assert getattr(made, field) is not None


def nothing_written(vpn: InProcessCli) -> None:
    """No row, no keys, no rendered file, no engine (a server's turn file may stay)."""
    listed = vpn("--format", "json", "server", "list")
    assert listed.code == 0
    assert listed.json() == []
    for top in ("data/keys", "state/rendered"):
        assert not any(p.is_file() for p in (vpn.home / top).rglob("*")), top
    assert not list((vpn.home / "state" / "run").glob("*.pid"))


@pytest.mark.parametrize(
    "args",
    [
        ["--transport", "ws", "--path", "/a\x00b"],
        ["--transport", "ws", "--path", "/../x"],
        ["--transport", "ws", "--path", "/" + LONG],
        ["--transport", "httpupgrade", "--path", "/a%41"],
        ["--transport", "xhttp", "--path", "/a b"],
        ["--transport", "grpc", "--service-name", ".."],
        ["--transport", "grpc", "--service-name", "a/b"],
        ["--transport", "ws", "--host-header", "a\x01.example"],
        ["--transport", "ws", "--host-header", "é.example"],
        ["--transport", "ws", "--decoy", "a.example:0"],
        ["--transport", "ws", "--decoy", "a.example:99999"],
        ["--transport", "ws", "--decoy", "a b:80"],
        ["--transport", "ws", "--name", "a/b"],
        ["--transport", "ws", "--name", ".."],
        ["--transport", "ws", "--port", "99999"],
        ["--transport", "ws", "--port", "0"],
    ],
)
def test_the_cli_refuses_hostile_values_with_one_sentence(
    vpn: InProcessCli, args: list[str]
) -> None:
    port = str(free_port())
    base = ["server", "install", "trojan", "--name", "s", "--port", port, "--sni", "vpn.example"]
    base += ["--listen", "127.0.0.1", "--host", "127.0.0.1"]
    for option in ("--name", "--port"):  # a later --name or --port wins
        if option in args:
            base[base.index(option) : base.index(option) + 2] = []
    assert error_line(vpn(*base, *args), 3)
    nothing_written(vpn)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """What --cert or --key may point at that is no PEM file: a device that never ends, a pipe
    that blocks, a directory, a file too large to be a certificate."""
    import os

    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    (tmp_path / "dir.pem").mkdir()
    huge = tmp_path / "huge.pem"
    with huge.open("wb") as file:
        file.truncate(64 << 20)  # sparse: 64 MiB without writing them
    return {
        "/dev/zero": Path("/dev/zero"),
        "fifo": fifo,
        "dir": tmp_path / "dir.pem",
        "huge": huge,
    }


@pytest.mark.parametrize("which", ["cert", "key"])
@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("/dev/zero", "not a regular file"),
        ("fifo", "not a regular file"),
        ("dir", "is a directory"),
        ("huge", "larger than 1 MiB"),
    ],
)
def test_cert_and_key_that_are_no_files_are_refused_at_once(
    vpn: InProcessCli, bad_files: dict[str, Path], tmp_path: Path, which: str, bad: str, words: str
) -> None:
    import time

    from vpn_manager.engines import tls

    cert, key = tls.make_self_signed(tmp_path / "good", "vpn.example")
    given = {"cert": cert, "key": key} | {which: bad_files[bad]}
    started = time.monotonic()
    port = str(free_port())
    result = vpn(
        "server", "install", "trojan", "--name", "s", "--port", port, "--sni", "vpn.example",
        "--listen", "127.0.0.1", "--transport", "ws",
        "--cert", str(given["cert"]), "--key", str(given["key"]),
    )  # fmt: skip
    assert time.monotonic() - started < 5  # a pipe or /dev/zero read would never end
    message = error_line(result, 3)
    assert words in message
    assert ("certificate" if which == "cert" else "key") in message
    nothing_written(vpn)


HOSTILE_SETS = [
    ["--decoy", "a.example:0"],
    ["--decoy", "a.example:99999"],
    ["--decoy", "..:80"],
    ["--decoy", "a\x00b:80"],
    ["--decoy", f"{LONG}:80"],
    ["--sni", "a b"],
    ["--sni", "é.example"],
    ["--host", "a/b"],
    ["--port", "0"],
    ["--cert", "/dev/zero", "--key", "/dev/zero"],
    ["--cert", "FIFO", "--key", "FIFO"],
    ["--cert", "HUGE", "--key", "HUGE"],
    ["--dest", "a.example:443"],
]


def test_server_set_refuses_hostile_values_and_changes_nothing(
    vpn: InProcessCli, bad_files: dict[str, Path]
) -> None:
    """On a running Trojan+WS+TLS server with a user: one sentence each, and its rows,
    rendered config, keys and engine stay as they were."""
    from tests.test_cli_server_set import state

    port = str(free_port())
    install = [
        "server",
        "install",
        "trojan",
        "--name",
        "tw",
        "--port",
        port,
        "--sni",
        "vpn.example",
    ]
    assert vpn(*install, "--listen", "127.0.0.1", "--transport", "ws").code == 0
    assert vpn("user", "add", "alice", "--server", "tw").code == 0
    pid = (vpn.home / "state" / "run" / "tw.pid").read_text()
    before = state(vpn)
    files = {"FIFO": str(bad_files["fifo"]), "HUGE": str(bad_files["huge"])}
    for args in HOSTILE_SETS:
        given = [files.get(a, a) for a in args]
        assert error_line(vpn("server", "set", "tw", *given, "--yes"), 3), args
        assert state(vpn) == before, args
        assert (vpn.home / "state" / "run" / "tw.pid").read_text() == pid, args


def test_a_replaced_certificate_is_removed_once_the_change_holds(
    vpn: InProcessCli, tmp_path: Path
) -> None:
    """`vpn server set --sni` makes a new self-signed certificate next to the one in use; once
    the change holds, only the new one is left (no old private key lying about), and a change
    that is refused leaves only the one in use too."""
    from vpn_manager.engines import tls

    port = str(free_port())
    install = ["server", "install", "trojan", "--name", "tw", "--port", port, "--sni", "a.example"]
    assert vpn(*install, "--listen", "127.0.0.1", "--transport", "ws").code == 0
    keys = vpn.home / "data" / "keys" / "tw"

    def kept() -> list[str]:
        return sorted(str(p.relative_to(keys)) for p in keys.rglob("*") if p.is_file())

    for name in ("b.example", "c.example"):
        assert vpn("server", "set", "tw", "--sni", name, "--yes").code == 0
        settings = vpn("--format", "json", "server", "list").json()[0]["settings"]
        in_use = Path(settings["tls"]["cert_file"]).parent.relative_to(keys)
        assert kept() == [f"{in_use}/cert.pem", f"{in_use}/key.pem"]
    cert, _ = tls.make_self_signed(tmp_path / "other", "d.example")
    mismatched = ["--cert", str(cert), "--key", str(tmp_path / "missing.pem")]
    assert error_line(vpn("server", "set", "tw", *mismatched), 3)
    assert kept() == [f"{in_use}/cert.pem", f"{in_use}/key.pem"]
