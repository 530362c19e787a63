"""The user's page: what a browser gets at the subscription URL. Their status, usage against
quota, expiry, and for each server the link (or WireGuard `.conf`), its QR code and a download;
one-tap import buttons for the common apps. Server-rendered HTML with its CSS inline: no
JavaScript, nothing fetched from elsewhere, readable on a phone, light or dark as the device is.

A user who is disabled, expired or over quota sees why, and no link: their configs would not
work, and the page never hands out one that does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from vpn_manager.units import format_size

ACTIVE = "active"
PHONE_COLUMNS = 40  # characters of a text area's line on a phone (monospace .8rem, 390px wide)


@dataclass(frozen=True)
class ServerEntry:
    name: str
    protocol: str
    link: str  # the share link, or a WireGuard peer's .conf
    qr_svg: str  # the link's QR code (inline SVG)
    download: str  # the URL of the config file to download


@dataclass(frozen=True)
class AppButton:
    name: str
    platforms: str
    link: str


@dataclass(frozen=True)
class UserPage:
    user: str
    status: str  # "active", or why the user cannot connect: "disabled", "expired", "over quota"
    used: int  # bytes this period
    quota: int | None  # bytes a period, None: no quota
    expires: datetime | None
    subscription_url: str
    servers: Sequence[ServerEntry]
    apps: Sequence[AppButton]
    title: str = "VPN"


CSS = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #f6f7f9; --card: #fff; --muted: #5b6470;
  --accent: #2563eb; --on-accent: #fff; --bad: #b42318; --bar: #dde3ea; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --bg: #0f1216; --card: #181c22;
  --muted: #9aa4b0; --accent: #60a5fa; --on-accent: #0f1216; --bad: #f97066; --bar: #2a313a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 46rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; }
h1, h2 { overflow-wrap: anywhere; }
section { background: var(--card); border-radius: .75rem; padding: 1rem; margin: 0 0 1rem;
  box-shadow: 0 1px 2px rgb(0 0 0 / .08); }
.status { font-weight: 600; }
.status.bad { color: var(--bad); }
.muted { color: var(--muted); font-size: .9rem; }
.bar { height: .6rem; border-radius: .3rem; background: var(--bar); overflow: hidden;
  margin: .4rem 0; }
.bar > span { display: block; height: 100%; background: var(--accent); }
.bar.full > span { background: var(--bad); }
textarea { width: 100%; font: .8rem/1.3 ui-monospace, monospace; color: var(--fg);
  background: var(--bg); border: 1px solid var(--bar); border-radius: .4rem; padding: .5rem;
  resize: vertical; word-break: break-all; field-sizing: content; }
.qr { max-width: 16rem; margin: .5rem auto; }
.qr svg { width: 100%; height: auto; display: block; border-radius: .4rem; }
.apps { display: flex; flex-wrap: wrap; gap: .5rem; }
a.button { display: inline-block; padding: .5rem .8rem; border-radius: .5rem;
  background: var(--accent); color: var(--on-accent); text-decoration: none; font-weight: 600; }
a { color: var(--accent); }
"""


def render(page: UserPage) -> str:
    """The whole page, as text."""
    title = f"{page.title}: {page.user}"
    body = [f"<h1>{escape(title)}</h1>", _summary(page)]
    if page.status == ACTIVE:
        body.append(_subscription(page))
        body.extend(_server(entry) for entry in page.servers)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _summary(page: UserPage) -> str:
    bad = page.status != ACTIVE
    status = f'<p class="status{" bad" if bad else ""}">Status: {escape(page.status)}</p>'
    if bad:
        status += (
            '<p class="muted">Your links do not work now. '
            "Ask the person who runs this VPN to let you back in.</p>"
        )
    used = format_size(page.used)
    if page.quota:
        share = min(page.used / page.quota, 1.0)
        usage = (
            f"<p>Used {escape(used)} of {escape(format_size(page.quota))} this period</p>"
            f'<div class="bar{" full" if share >= 1 else ""}" role="progressbar" '
            f'aria-valuemin="0" aria-valuemax="100" aria-valuenow="{share * 100:.0f}">'
            f'<span style="width: {share * 100:.1f}%"></span></div>'
        )
    else:
        usage = f"<p>Used {escape(used)} this period (no limit)</p>"
    expiry = (
        f"<p>Expires {escape(page.expires.strftime('%Y-%m-%d %H:%M %Z').strip())}</p>"
        if page.expires
        else "<p>Never expires</p>"
    )
    return f'<section class="summary">{status}{usage}{expiry}</section>'


def _subscription(page: UserPage) -> str:
    buttons = "".join(
        f'<a class="button" href="{escape(app.link)}" title="{escape(app.platforms)}">'
        f"{escape(app.name)}</a>"
        for app in page.apps
    )
    return (
        '<section class="subscription"><h2>Add to your app</h2>'
        "<p>Tap your app to import every server at once; it keeps them up to date.</p>"
        f'<div class="apps">{buttons}</div>'
        '<p class="muted">Or paste this subscription URL into the app:</p>'
        f'<textarea readonly rows="{_rows(page.subscription_url)}" aria-label="Subscription URL">'
        f"{escape(page.subscription_url)}</textarea></section>"
    )


def _server(entry: ServerEntry) -> str:
    return (
        f'<section class="server"><h2>{escape(entry.name)} '
        f'<span class="muted">{escape(entry.protocol)}</span></h2>'
        f'<div class="qr">{entry.qr_svg}</div>'
        f'<textarea readonly rows="{_rows(entry.link)}" '
        f'aria-label="Link for {escape(entry.name)}">{escape(entry.link)}</textarea>'
        f'<p><a href="{escape(entry.download)}" download>Download the config</a></p></section>'
    )


def _rows(text: str) -> int:
    """Rows enough for `text` at a phone's width, where the browser cannot size a text area to
    its content (CSS field-sizing; Chromium can): a link wraps at any character."""
    lines = text.rstrip("\n").split("\n")
    return min(max(sum(-(-len(line) // PHONE_COLUMNS) or 1 for line in lines), 2), 14)
