"""Subscription tokens: the one secret in a user's subscription URL.

A token is 256 random bits, URL-safe base64 (43 characters). The database keeps two things of
it: its SHA-256 (what `vpn web` looks a request up by; the token itself is never compared or
stored in the clear) and the token sealed with this home's subscription key (AES-256-GCM), so
that `vpn user link --subscription` can print the URL again. The database alone (a backup, a
PostgreSQL reader) gives no working URL away.

The key is `subscription.key` in the data directory: 32 random bytes, mode 0600, made on first
need (two processes making it at once agree on one; a maker killed half-way leaves a temp file
that the next reader of the key removes once it is a minute old). A database moved to another
home without that file keeps every user's URL working in `vpn web` (it needs only the hashes);
printing one there says to rotate it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from vpn_manager.errors import ConfigError, FileError
from vpn_manager.fsutil import remove_temps

TOKEN_BYTES = 32
KEY_BYTES = 32
NONCE_BYTES = 12
STALE_TEMP_SECONDS = 60  # a key maker's temp file this old was left by a killed one
_CONTEXT = b"vpn-manager subscription token v1"  # AES-GCM's associated data


def new_token() -> str:
    """A fresh token: 256 random bits as URL-safe base64 without padding."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    """What the database keeps to find a token's user: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenSeal:
    """Seals and opens tokens with the home's subscription key (`key_file`)."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._key: bytes | None = None

    def seal(self, token: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._key or self._read() or self._make()
        self._key = key
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, token.encode(), _CONTEXT)
        return base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str | None:
        """The token, or None when this home's key cannot open it (made in another home)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._key = self._key or self._read()
        if key is None:
            return None
        try:
            raw = base64.b64decode(sealed, validate=True)
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _CONTEXT).decode()
        except (ValueError, InvalidTag):
            return None

    def _read(self) -> bytes | None:
        try:
            key = self.key_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileError(f"Cannot read {self.key_file}: {exc.strerror or exc}.") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{self.key_file} is not a subscription key ({len(key)} bytes, not {KEY_BYTES}).",
                hint="Move it away; a new key is made, and every user needs vpn user rotate-token.",
            )
        remove_temps(self.key_file, older_than=STALE_TEMP_SECONDS)
        return key

    def _make(self) -> bytes:
        """Write a new key with O_EXCL: of two processes making it at once, one writes it and
        the other reads what that one wrote."""
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(KEY_BYTES)
        # named as remove_temps finds it: .subscription.key.XXXXXXXX.tmp
        temp = self.key_file.with_name(f".{self.key_file.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temp, self.key_file)  # fails if another process got there first
        except FileExistsError:
            pass
        except OSError as exc:
            raise FileError(f"Cannot write {self.key_file}: {exc.strerror or exc}.") from None
        finally:
            temp.unlink(missing_ok=True)
        found = self._read()
        if found is None:  # pragma: no cover -- removed between link and read
            raise FileError(f"{self.key_file} vanished while it was being made.")
        return found
