"""`vpn server install vless|trojan|vmess` with a transport and a security: the defaults, and
every option or combination that does not apply (or that Xray refuses: REALITY over ws and
httpupgrade, checked by running Xray) turned down with one sentence before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.cli_helpers import InProcessCli, error_line, stop_engines
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


@pytest.fixture
def vpn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[InProcessCli]:
    runner = InProcessCli(tmp_path, monkeypatch, capsys)
    try:
        yield runner
    finally:
        stop_engines(runner)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["vless", "--transport", "ws", "--security", "reality", "--sni", "a.example"], "ws"),
        (["trojan", "--transport", "raw", "--path", "/p"], "--path"),
        (["vmess", "--transport", "grpc", "--xhttp-mode", "auto"], "--xhttp-mode"),
        (["trojan", "--security", "reality", "--sni", "a.example"], "trojan links cannot carry"),
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
