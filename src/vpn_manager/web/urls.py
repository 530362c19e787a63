"""The subscription URL a user is given: `public_url` (web.public_url) when set, else the address
`vpn web` listens on, which must then be one a client can reach (not a wildcard)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpn_manager.errors import InvalidInput

if TYPE_CHECKING:
    from vpn_manager.settings import WebSettings

WILDCARDS = ("0.0.0.0", "::", "[::]", "")


def base_url(*, public_url: str | None, listen: str, port: int, prefix: str, tls: bool) -> str:
    """Where `vpn web`'s routes start, as users' apps reach it (no trailing slash)."""
    if public_url:
        return public_url.rstrip("/")
    if listen in WILDCARDS:
        raise InvalidInput(
            f"vpn web listens on every address ({listen or '*'}), so the URL users get needs "
            "the name or address they reach it at.",
            hint="Set it: public_url under [web] in config.toml, or VPN_WEB__PUBLIC_URL="
            "https://vpn.example.com:2096.",
        )
    return listen_url(listen, port, prefix, tls=tls)


def listen_url(listen: str, port: int, prefix: str, *, tls: bool) -> str:
    """The address `vpn web` listens on, as a URL (a wildcard address as it is)."""
    host = f"[{listen.strip('[]')}]" if ":" in listen else listen
    return f"{'https' if tls else 'http'}://{host}:{port}{prefix}"


def settings_base_url(web: WebSettings) -> str:
    """`base_url` as the [web] settings give it."""
    return base_url(
        public_url=web.public_url,
        listen=web.listen,
        port=web.port,
        prefix=web.path_prefix,
        tls=bool(web.cert_file),
    )


def subscription_url(base: str, token: str) -> str:
    return f"{base}/sub/{token}"
