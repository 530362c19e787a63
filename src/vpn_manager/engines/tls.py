"""Certificates of the TLS servers (sing-box's Trojan, Hysteria2, TUIC, VMess; Xray's VLESS, VMess
and Trojan over TLS, and Hysteria2): a self-signed one made at install when the user brings
none, the pins clients use to trust it, a check of a given pair, and the stored model of a
server's certificate (`Certificate`) with how install, `vpn server set` and rotate-keys make one.
Both engines use this one module.

Two pin forms, for two kinds of client:
- `cert_sha256`: hex SHA-256 of the whole certificate (DER). Hysteria2 links' `pinSHA256`
  and Xray's `pinnedPeerCertSha256` use this one.
- `public_key_sha256`: base64 SHA-256 of the certificate's SubjectPublicKeyInfo (DER), the HPKP
  form. sing-box clients (1.13+) use this one: `"tls": {"certificate_public_key_sha256": [PIN]}`.
  It survives re-issuing a certificate for the same key.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

from vpn_manager.engines.stored import Stored
from vpn_manager.errors import InvalidInput
from vpn_manager.fsutil import atomic_write, read_pem
from vpn_manager.kinds import is_ip

if TYPE_CHECKING:
    from cryptography import x509

    from vpn_manager.models.server import ServerChange, ServerCreate

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_DAYS = 3650


def make_self_signed(directory: Path, server_name: str) -> tuple[Path, Path]:
    """Write a new EC P-256 key (mode 0600) and a self-signed certificate for `server_name` (a DNS
    name, or an IP address) valid for about ten years into `directory`; return (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    san: x509.GeneralName
    try:
        san = x509.IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        san = x509.DNSName(server_name)
    # A common name is at most 64 characters; clients check the SAN, not the CN.
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, server_name)] if len(server_name) <= 64 else []
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    # Key first: a running sing-box watches both files and reloads when they change, so the
    # last change it sees (the certificate) completes a matching pair.
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def load_cert(cert: Path) -> x509.Certificate:
    """The first certificate of a PEM file; InvalidInput if there is none."""
    return _parse_cert(cert, read_pem(cert, "certificate"))


def _parse_cert(cert: Path, data: bytes) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InvalidInput(
            f"The certificate file {cert} does not hold a PEM certificate.",
            hint="Give the certificate (chain) in PEM form: -----BEGIN CERTIFICATE-----.",
        ) from None


def cert_sha256(cert: Path) -> str:
    """Hex SHA-256 of the certificate's DER encoding (hysteria2 `pinSHA256`, Xray
    `pinnedPeerCertSha256`)."""
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(load_cert(cert).public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_sha256(cert: Path) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (sing-box
    `certificate_public_key_sha256`)."""
    from cryptography.hazmat.primitives import serialization

    spki = (
        load_cert(cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def check_pair(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """Raise InvalidInput unless `cert` holds a PEM certificate and `key` the PEM private key
    that belongs to it (sing-box reads both at start and refuses anything else); return the
    bytes of both as checked."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    cert_data = read_pem(cert, "certificate")
    certificate = _parse_cert(cert, cert_data)
    data = read_pem(key, "key")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidInput(
            f"The key file {key} is encrypted.", hint="Give the private key without a passphrase."
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput(
            f"The key file {key} does not hold a PEM private key.",
            hint="Give the private key in PEM form: -----BEGIN PRIVATE KEY-----.",
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise InvalidInput(
            f"The key {key} does not belong to the certificate {cert}.",
            hint="Give the private key the certificate was issued for.",
        )
    return cert_data, data


# -- a server's certificate, as stored ----------------------------------------------------------
@dataclass(frozen=True)
class Certificate(Stored):
    """The server's certificate: kept in the server's keys directory; `cert_sha256` pins a
    self-signed one in links."""

    server_name: str
    cert_file: str
    key_file: str
    self_signed: bool = False
    cert_sha256: str | None = None


def own_certificate(cert: Path, key: Path, directory: Path, name: str) -> Certificate:
    """A certificate of the user's, checked, then kept in `directory` (the key 0600)."""
    cert_data, key_data = check_pair(cert, key)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept_cert, kept_key = directory / CERT_NAME, directory / KEY_NAME
    atomic_write(kept_cert, cert_data, mode=0o644)
    atomic_write(kept_key, key_data)
    return Certificate(
        server_name=name,
        cert_file=str(kept_cert),
        key_file=str(kept_key),
        self_signed=False,
        cert_sha256=cert_sha256(kept_cert),
    )


def self_signed(directory: Path, name: str) -> Certificate:
    """A new self-signed certificate for `name` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept_cert, kept_key = make_self_signed(directory, name)
    return Certificate(
        server_name=name,
        cert_file=str(kept_cert),
        key_file=str(kept_key),
        self_signed=True,
        cert_sha256=cert_sha256(kept_cert),
    )


def certificate(create: ServerCreate, keys_dir: Path) -> Certificate:
    """A new server's certificate: the one given (--cert/--key), else a self-signed one, for
    --sni, else --host if that is a DNS name."""
    server_name = create.sni or (create.host if create.host and not is_ip(create.host) else None)
    if server_name is None:
        raise InvalidInput(
            f"{create.protocol.value} uses TLS and needs a server name for its certificate.",
            hint="Give --sni NAME (your domain, or the name clients should send), "
            "or --host with a DNS name.",
        )
    if create.cert_file and create.key_file:
        return own_certificate(Path(create.cert_file), Path(create.key_file), keys_dir, server_name)
    return self_signed(keys_dir, server_name)


def new_certificate(
    server: str, now: Certificate, change: ServerChange, keys_dir: Path
) -> Certificate:
    """The certificate after `vpn server set`: the one given, or a new self-signed one for a
    new name. Kept in a directory of its own in `keys_dir`, so that the files in use stay as
    they are until the change holds (sing-box reloads when its files change)."""
    name = change.sni or now.server_name
    directory = keys_dir / f"tls-{token_hex(4)}"
    if change.cert_file is not None and change.key_file is not None:
        return own_certificate(Path(change.cert_file), Path(change.key_file), directory, name)
    if not now.self_signed:
        raise InvalidInput(
            f"The certificate of {server} is yours, for {now.server_name}.",
            hint=f"Give one for {name} with --cert and --key too.",
        )
    return self_signed(directory, name)


def unused_certificates(keys_dir: Path, settings: Mapping[str, Any]) -> list[Path]:
    """What in a server's keys directory holds a certificate its settings no longer name: the
    one a `vpn server set` replaced (kept until the change held), or one it made before it was
    refused, cut short or killed. Nothing for a server without a certificate."""
    stored = settings.get("tls")
    if not isinstance(stored, dict) or not stored.get("cert_file"):
        return []
    in_use = Path(str(stored["cert_file"])).parent
    found = [d for d in keys_dir.glob("tls-*") if d.is_dir() and d != in_use]
    if in_use != keys_dir:  # the one install made, replaced since
        found += [f for f in (keys_dir / CERT_NAME, keys_dir / KEY_NAME) if f.exists()]
    return sorted(found)


def forget_unused_certificates(keys_dir: Path, settings: Mapping[str, Any]) -> int:
    """Remove unused_certificates(); how many there were."""
    found = unused_certificates(keys_dir, settings)
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(found)


def reissue(now: Certificate) -> Certificate:
    """A self-signed certificate made again in place (rotate-keys): same name, new key."""
    make_self_signed(Path(now.cert_file).parent, now.server_name)
    return replace(now, cert_sha256=cert_sha256(Path(now.cert_file)))
