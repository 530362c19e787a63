"""`vpn user link --subscription` and the ways `vpn web` refuses to start (one sentence, non-zero
exit, nothing listening). `vpn web` serving real servers is tests/e2e/test_web.py."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.cli_helpers import Cli, InProcessCli, error_line, write_config
from vpn_manager.errors import ConfigError

URL = "http://127.0.0.1:2096/sub/"


def test_the_subscription_url_is_made_once_and_kept(vpn: InProcessCli) -> None:
    assert vpn("user", "add", "alice", "bob").code == 0
    first = vpn("user", "link", "alice", "--subscription")
    assert first.code == 0, first
    url = first.stdout.strip()
    assert url.startswith(URL)
    assert len(url.removeprefix(URL)) == 43
    assert vpn("user", "link", "alice", "--subscription").stdout.strip() == url
    shown = vpn("user", "show", "alice", "--secrets", "--format", "json").json()
    assert url.endswith(shown["subscription_token"])
    data = vpn("user", "link", "alice", "--subscription", "--format", "json").json()
    assert data == {"name": "alice", "subscription_url": url}
    bob = vpn("user", "link", "bob", "--subscription").stdout.strip()
    assert bob != url
    key = vpn.home / "data" / "subscription.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    database = (vpn.home / "data" / "vpn.db").read_bytes()
    assert url.removeprefix(URL).encode() not in database  # only its hash and a sealed copy


def test_the_url_follows_the_web_settings(vpn: InProcessCli) -> None:
    assert vpn("user", "add", "alice").code == 0
    write_config(vpn.home, '[web]\npublic_url = "https://vpn.example.com:8443/x/"\n')
    url = vpn("user", "link", "alice", "--subscription").stdout.strip()
    assert url.startswith("https://vpn.example.com:8443/x/sub/")
    write_config(vpn.home, '[web]\nlisten = "0.0.0.0"\n')
    message = error_line(vpn("user", "link", "alice", "--subscription"), 3)
    assert "listens on every address" in message
    write_config(vpn.home, '[web]\nlisten = "::1"\nport = 9000\npath_prefix = "/vpn/"\n')
    url = vpn("user", "link", "alice", "--subscription").stdout.strip()
    assert url.startswith("http://[::1]:9000/vpn/sub/")


def test_rotating_gives_a_new_url(vpn: InProcessCli) -> None:
    assert vpn("user", "add", "alice").code == 0
    old = vpn("user", "link", "alice", "--subscription").stdout.strip()
    token = vpn("user", "rotate-token", "alice").stdout.strip()
    new = vpn("user", "link", "alice", "--subscription").stdout.strip()
    assert new != old
    assert new.endswith(token)


def test_subscription_refusals(vpn: InProcessCli, tmp_path: Path) -> None:
    assert vpn("user", "add", "alice").code == 0
    assert "no user named 'nobody'" in error_line(
        vpn("user", "link", "nobody", "--subscription"), 4
    )
    assert "--server does not apply" in error_line(
        vpn("user", "link", "alice", "--subscription", "--server", "x"), 3
    )
    png = tmp_path / "sub.png"
    assert vpn("user", "link", "alice", "--subscription", "--png", str(png)).code == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(png.stat().st_mode) == 0o600


def test_web_refuses_bad_settings_in_one_sentence(vpn: InProcessCli, tmp_path: Path) -> None:
    assert "both a certificate and its key" in error_line(vpn("web", "--cert", "/etc/hosts"), 3)
    garbage = tmp_path / "cert.pem"
    garbage.write_text("not a certificate")
    assert "Cannot use" in error_line(vpn("web", "--cert", str(garbage), "--key", str(garbage)), 6)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert "the port is taken" in error_line(vpn("web", "--port", str(port)), 3)
    assert "Cannot listen on 192.0.2.1:20960" in error_line(
        vpn("web", "--listen", "192.0.2.1", "--port", "20960"), 3
    )
    write_config(vpn.home, '[web]\npath_prefix = "../x"\n')
    assert "web.path_prefix" in error_line(vpn("web"), 6)


# -- --cert/--key read as `server install --cert` reads them -------------------------------------
@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A real certificate and its key."""
    from vpn_manager.engines.tls import make_self_signed

    directory = tmp_path / "pair"
    directory.mkdir()
    return make_self_signed(directory, "vpn.example")


def hostile_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A file no certificate or key can be, and the words its refusal says."""
    if kind == "zero":
        return Path("/dev/zero"), "not a regular file"
    if kind == "fifo":
        fifo = tmp_path / "fifo.pem"
        os.mkfifo(fifo)
        return fifo, "not a regular file"
    if kind == "directory":
        return tmp_path, "it is a directory"
    if kind == "missing":
        return tmp_path / "missing.pem", "does not exist"
    big = tmp_path / "big.pem"
    with big.open("wb") as file:
        file.truncate(3 << 30)  # sparse: 3 GiB of nothing
    return big, "larger than 1 MiB"


@pytest.mark.parametrize("side", ["cert", "key", "setting"])
@pytest.mark.parametrize("kind", ["zero", "fifo", "directory", "missing", "big"])
def test_web_refuses_a_cert_or_key_that_is_no_file_at_once(
    cli: Cli, tmp_path: Path, pair: tuple[Path, Path], side: str, kind: str
) -> None:
    cert, key = pair
    bad, words = hostile_file(tmp_path, kind)
    args = ["web", "--listen", "127.0.0.1", "--port", str(free_port())]
    if side == "cert":
        args += ["--cert", str(bad), "--key", str(key)]
    elif side == "key":
        args += ["--cert", str(cert), "--key", str(bad)]
    else:  # from the config file: the same reader
        write_config(cli.home, f'[web]\ncert_file = "{bad}"\nkey_file = "{key}"\n')
    started = time.monotonic()
    result = cli(*args)
    assert time.monotonic() - started < 5, result
    message = error_line(result, 3)
    assert words in message, message
    assert str(bad) in message, message


def test_web_still_takes_a_good_pair(pair: tuple[Path, Path]) -> None:
    from vpn_manager.web.server import check_tls

    cert, key = pair
    check_tls(str(cert), str(key))  # nothing raised
    with pytest.raises(ConfigError, match="Cannot use"):
        check_tls(str(key), str(cert))  # each file readable, but not a pair


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
