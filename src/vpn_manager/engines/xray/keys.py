"""REALITY keys in Xray's encoding: raw 32-byte x25519 keys as URL-safe base64 without padding."""

from __future__ import annotations

import base64
import secrets


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_pair() -> tuple[str, str]:
    """A fresh (private, public) x25519 pair."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    return _b64(private.private_bytes_raw()), _b64(private.public_key().public_bytes_raw())


def public_key(private: str) -> str:
    """The public key that belongs to an encoded private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = _unb64(private)
    if len(raw) != 32:
        raise ValueError("a REALITY private key is 32 bytes")
    return _b64(X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw())


def new_short_ids(count: int = 3) -> list[str]:
    """Short ids: hex strings of 8 bytes (the maximum), one per client group."""
    return [secrets.token_hex(8) for _ in range(count)]
