"""Which document a subscription request gets: `?format=` when given, else the app's
User-Agent, else (a browser) the user's page, else the base64 list every app reads.

- sing-box JSON, `?format=sing-box` (or `singbox`, `json`): sing-box, SFA, SFI, SFM, SFT,
  Hiddify, Karing;
- Clash/Mihomo YAML, `?format=clash` (or `mihomo`, `yaml`): Clash, mihomo, Clash Verge,
  Clash Meta, FlClash, Stash, ClashX, Clash Nyanpasu, Koala Clash;
- base64 links, `?format=links` (or `base64`, `v2ray`): v2rayN, v2rayNG, Shadowrocket,
  Streisand, NekoBox, NekoRay, Happ, V2Box, and any app not named above;
- the user's page, `?format=html`: a browser (Accept: text/html).

The User-Agent is matched case-insensitively, in the order of `USER_AGENTS`.
"""

from __future__ import annotations

from enum import StrEnum

from vpn_manager.errors import InvalidInput


class Format(StrEnum):
    LINKS = "links"
    SINGBOX = "sing-box"
    CLASH = "clash"
    PAGE = "html"


ALIASES: dict[str, Format] = {
    "links": Format.LINKS,
    "base64": Format.LINKS,
    "v2ray": Format.LINKS,
    "sing-box": Format.SINGBOX,
    "singbox": Format.SINGBOX,
    "json": Format.SINGBOX,
    "clash": Format.CLASH,
    "mihomo": Format.CLASH,
    "yaml": Format.CLASH,
    "html": Format.PAGE,
}
# (User-Agent fragment, lower case) → format, in the order they are tried.
USER_AGENTS: tuple[tuple[str, Format], ...] = (
    ("hiddify", Format.SINGBOX),  # sing-box inside, though its User-Agent names ClashMeta too
    ("clash", Format.CLASH),  # Clash, Clash Verge, Clash Meta, ClashX, Clash Nyanpasu
    ("mihomo", Format.CLASH),
    ("flclash", Format.CLASH),
    ("stash", Format.CLASH),
    ("sing-box", Format.SINGBOX),
    ("sfa/", Format.SINGBOX),  # the sing-box apps: Android, iOS, macOS, Apple TV
    ("sfi/", Format.SINGBOX),
    ("sfm/", Format.SINGBOX),
    ("sft/", Format.SINGBOX),
    ("karing", Format.SINGBOX),
)
MEDIA_TYPES: dict[Format, str] = {
    Format.LINKS: "text/plain; charset=utf-8",
    Format.SINGBOX: "application/json",
    Format.CLASH: "text/yaml; charset=utf-8",
    Format.PAGE: "text/html; charset=utf-8",
}
FILE_SUFFIXES: dict[Format, str] = {
    Format.LINKS: ".txt",
    Format.SINGBOX: ".json",
    Format.CLASH: ".yaml",
    Format.PAGE: ".html",
}


def choose(asked: str | None, user_agent: str, accept: str) -> Format:
    """The format of a request: `asked` (the `format` query parameter) wins; then the app named
    by the User-Agent; then a browser (text/html accepted) gets the page; then the links."""
    if asked is not None:
        try:
            return ALIASES[asked.strip().lower()]
        except KeyError:
            known = ", ".join(sorted(ALIASES))
            raise InvalidInput(f"Unknown format {asked!r}.", hint=f"Known: {known}.") from None
    agent = user_agent.lower()
    for fragment, format in USER_AGENTS:
        if fragment in agent:
            return format
    if "text/html" in accept.lower():
        return Format.PAGE
    return Format.LINKS
