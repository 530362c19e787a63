"""Credentials for sing-box servers and their users, generated once and kept.

Server secrets (`server_secret`):
- every protocol: `api_secret`, the bearer token of the sing-box `api` service (gRPC);
- Shadowsocks 2022 methods also `psk`, the server key: base64 of the method's key size
  (16 bytes for 2022-blake3-aes-128-gcm, 32 for 2022-blake3-aes-256-gcm).

User secrets (`client_secret`), as the protocol's credential shape says (protocols.py):
- a managed (Shadowsocks) server's users: `password` — a 2022 user key (base64, the method's key
  size; the client's password is then `SERVER_PSK:USER_PSK`), or a random URL-safe string for
  the older AEAD methods;
- otherwise a random `password` and/or a random `uuid` (the proxies' username is the user's
  name, not a secret).

Random passwords are 24 URL-safe characters (144 bits), safe in links without escaping.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from secrets import token_bytes, token_urlsafe
from typing import Any

from vpn_manager.engines.singbox.protocols import protocol_row
from vpn_manager.engines.singbox.settings import SingBoxCredential, SingBoxSecret
from vpn_manager.errors import InvalidInput

SS_DEFAULT_METHOD = "2022-blake3-aes-128-gcm"
# Key sizes of the Shadowsocks 2022 methods (SIP022): server and user keys are this many bytes.
SS_2022_KEY_SIZES = {
    "2022-blake3-aes-128-gcm": 16,
    "2022-blake3-aes-256-gcm": 32,
}
# Every server has several users, so every method must have a multi-user mode.
# 2022-blake3-chacha20-poly1305 has none (SIP022 defines identity headers for the AES methods
# only): sing-box 1.14 refuses it with `users` or `managed` ("invalid argument").
SINGLE_USER_METHODS = {"2022-blake3-chacha20-poly1305": "2022-blake3-aes-256-gcm"}
SS_METHODS = (
    SS_DEFAULT_METHOD,
    "2022-blake3-aes-256-gcm",
    "aes-256-gcm",
    "chacha20-ietf-poly1305",
    "aes-128-gcm",
)
# Outline's apps speak the AEAD ciphers only (no 2022 ones); an Outline server uses the first.
OUTLINE_METHODS = ("chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm")
PASSWORD_BYTES = 18  # token_urlsafe(18) is 24 characters


def random_password() -> str:
    return token_urlsafe(PASSWORD_BYTES)


def new_key(method: str) -> str:
    """A Shadowsocks 2022 key for `method`: standard base64 with padding, as sing-box reads it."""
    return base64.b64encode(token_bytes(SS_2022_KEY_SIZES[method])).decode()


def is_2022(method: str) -> bool:
    return method in SS_2022_KEY_SIZES


def check_method(method: str | None) -> str:
    """The Shadowsocks method to use: the default when none is given; InvalidInput when sing-box
    (or this tool) does not support it."""
    if method is None:
        return SS_DEFAULT_METHOD
    name = method.strip().lower()
    if name in SINGLE_USER_METHODS:
        raise InvalidInput(
            f"The Shadowsocks method {name} cannot serve several users (SIP022 gives it no "
            "user keys).",
            hint=f"Use {SINGLE_USER_METHODS[name]} instead.",
        )
    if name not in SS_METHODS:
        raise InvalidInput(
            f"The Shadowsocks method {method!r} is not supported.",
            hint=f"Choose one of: {', '.join(SS_METHODS)} (the first is the default).",
        )
    return name


def check_outline_method(method: str | None) -> str:
    """The method of a server for Outline's apps: chacha20-ietf-poly1305 (what Outline's own
    servers use) when none is given; InvalidInput for one they cannot import."""
    if method is None:
        return OUTLINE_METHODS[0]
    name = check_method(method)
    if name not in OUTLINE_METHODS:
        raise InvalidInput(
            f"Outline's apps cannot use {name}: they speak {', '.join(OUTLINE_METHODS)} only.",
            hint="Drop --method (chacha20-ietf-poly1305 is used), or drop --outline.",
        )
    return name


def same_keys(old: str, new: str) -> bool:
    """Do users' keys of the `old` method work with the `new` one? The AEAD methods take any
    password; a 2022 method takes keys of its own size only."""
    return SS_2022_KEY_SIZES.get(old) == SS_2022_KEY_SIZES.get(new)


def check_password(method: str, password: str) -> None:
    """Raise InvalidInput unless `password` fits `method`: for 2022 methods a base64 key of the
    method's size, for the others any non-empty string."""
    method = check_method(method)
    if not password:
        raise InvalidInput("The Shadowsocks password is empty.")
    if not is_2022(method):
        return
    size = SS_2022_KEY_SIZES[method]
    hint = f"Generate one with: sing-box generate rand --base64 {size}"
    try:
        raw = base64.b64decode(password, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"A {method} password must be a base64 key of {size} bytes; this is not base64.",
            hint=hint,
        ) from None
    if len(raw) != size:
        raise InvalidInput(
            f"A {method} password must be a base64 key of {size} bytes, not {len(raw)}.",
            hint=hint,
        )


def server_secret(protocol: str, method: str | None, psk: str | None = None) -> dict[str, Any]:
    """A new server's private values, as stored. `method` matters to managed (Shadowsocks)
    servers only; `psk`: the server key the user chose for a 2022 one (checked by the caller)."""
    key = None
    if protocol_row(protocol).managed:
        method = check_method(method)
        if is_2022(method):
            key = psk or new_key(method)
    return SingBoxSecret(api_secret=token_urlsafe(32), psk=key).to_dict()


def client_secret(protocol: str, method: str | None, password: str | None = None) -> dict[str, Any]:
    """A new user's credentials on a server, as stored. `method` matters to managed
    (Shadowsocks) servers only; `password`: the user's own (checked by the caller) instead of a
    random one."""
    row = protocol_row(protocol)
    if row.managed:
        method = check_method(method)
        password = password or (new_key(method) if is_2022(method) else random_password())
        return SingBoxCredential(password=password).to_dict()
    return SingBoxCredential(
        password=None if row.credential == "uuid" else password or random_password(),
        uuid=str(uuid.uuid4()) if "uuid" in row.credential else None,
    ).to_dict()
