"""WireGuard keys: x25519, standard base64 with padding (what `wg genkey`/`wg pubkey` print)."""

from __future__ import annotations

import base64
import secrets


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def key_pair() -> tuple[str, str]:
    """A fresh (private, public) pair."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    return _b64(private.private_bytes_raw()), _b64(private.public_key().public_bytes_raw())


def public_key(private: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = base64.b64decode(private, validate=True)
    if len(raw) != 32:
        raise ValueError("a WireGuard private key is 32 bytes")
    return _b64(X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw())


def preshared_key() -> str:
    return _b64(secrets.token_bytes(32))
