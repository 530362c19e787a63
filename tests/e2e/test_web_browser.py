"""The user's page in a real browser: the real `vpn web` on 127.0.0.1 over a real home (servers on
Xray and sing-box, a user with a quota and recorded usage), shown by headless Chromium as a phone
and a desktop, light and dark. The screenshots are kept in test-output/screenshots/ (their paths
are printed: `pytest -rA` shows them) and checked: their size, that they are not blank, that
the QR codes in them decode to the user's links, that the page fits the phone's width with every
link readable, and that text stays readable in both colour schemes."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Browser, Picture, View, chromium, picture
from tests.e2e.conftest import Vpn, install, install_singbox
from tests.e2e.test_web import fetch, web_server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
VIEWS = (
    View("phone-light", 390, 844),
    View("phone-dark", 390, 844, dark=True),
    View("desktop-light", 1280, 900),
    View("desktop-dark", 1280, 900, dark=True),
)
SERVERS = ("reality", "trojan", "ss")
SS_METHOD = "chacha20-ietf-poly1305"
# Recorded usage, by server: (upload, download). 1,234,567,890 bytes in all: the page shows
# 1.23GB of the 5GB quota, 24.7 % of the bar.
USAGE = {"reality": (34_567_890, 600_000_000), "ss": (100_000_000, 500_000_000)}
USED = "Used 1.23GB of 5GB this period"
SHARE = 1_234_567_890 / 5_000_000_000

# The contrast (WCAG 2) of each kind of text against what it is drawn on, the lowest of each.
CONTRASTS = """(() => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const channel = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const behind = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const lowest = {};
  for (const kind of ["h1", "h2", "p", ".muted", "a.button", "section.server a", "textarea"]) {
    lowest[kind] = 21;
    for (const el of document.querySelectorAll(kind)) {
      const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(behind(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      lowest[kind] = Math.min(lowest[kind], ratio);
    }
  }
  return lowest;
})()"""
# How the page lays out: what overflows the window's width, text areas that hide part of their
# text, each server's name with the rendered size of its QR codes, and how full the usage bar is.
LAYOUT = """(() => {
  const box = (el) => el.getBoundingClientRect();
  const bar = document.querySelector(".bar");
  return {
    pageWidth: document.documentElement.scrollWidth,
    wider: [...document.querySelectorAll("main *")]
      .filter((el) => box(el).right > innerWidth + 0.5)
      .map((el) => el.tagName + "." + el.className),
    hiding: [...document.querySelectorAll("textarea")]
      .filter((t) => t.scrollHeight > t.clientHeight + 1 || t.scrollWidth > t.clientWidth + 1)
      .map((t) => t.getAttribute("aria-label")),
    servers: [...document.querySelectorAll("section.server")].map((s) => ({
      name: s.querySelector("h2").firstChild.textContent.trim(),
      qrWidths: [...s.querySelectorAll("svg")].map((q) => box(q).width),
    })),
    filled: box(bar.firstElementChild).width / box(bar).width,
  };
})()"""


def record_usage(vpn: Vpn) -> None:
    """Add USAGE to alice's period through the accounting storage, as the service's poll does."""
    from datetime import UTC, datetime

    from vpn_manager.settings import Paths, load_settings
    from vpn_manager.storage import Database, accounting
    from vpn_manager.storage import servers as server_repo
    from vpn_manager.storage import users as user_repo

    paths = Paths.from_env({}, home=vpn.home)

    async def add() -> None:
        db = Database.from_settings(load_settings(paths, env=vpn.env), paths)
        try:
            async with db.session() as session:
                alice = (await user_repo.ids_for(session, ["alice"]))["alice"]
                for server, moved in USAGE.items():
                    row = await server_repo.server_row(session, server)
                    await accounting.add_usage(session, row.id, {alice: moved}, datetime.now(UTC))
        finally:
            await db.close()

    asyncio.run(add())


def add_alice(vpn: Vpn) -> str:
    """alice, on every server, with a 5GB quota, an expiry and USAGE this period; returns her
    subscription token."""
    granted = [arg for server in SERVERS for arg in ("--server", server)]
    vpn.ok("user", "add", "alice", *granted, "--quota", "5GB", "--expires", "2031-01-31")
    record_usage(vpn)
    shown = vpn.json("user", "show", "alice")
    assert isinstance(shown, dict)
    assert shown["period_upload_bytes"] + shown["period_download_bytes"] == 1_234_567_890
    url = vpn.ok("user", "link", "alice", "--subscription").stdout.strip()
    return url.rsplit("/sub/", 1)[1]


def decoded_qr_codes(screenshot: Path) -> set[str]:
    """What zbarimg (Debian's zbar-tools) reads from every QR code in a screenshot."""
    if shutil.which("zbarimg") is None:
        pytest.fail("zbarimg is missing: install zbar-tools (scripts/setup --dev does)")
    done = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(screenshot)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 4), done.stderr  # 4: no code found (the assertion says more)
    return {line for line in done.stdout.splitlines() if line}


@dataclass
class Seen:
    """What a view showed: its screenshot, and the page's layout and contrasts as measured."""

    view: View
    screenshot: Path
    layout: dict[str, Any]
    contrasts: dict[str, float]


def look(browser: Browser, url: str, view: View) -> Seen:
    browser.show(url, view)
    shot = browser.screenshot(SCREENSHOTS / f"web-page-{view.name}.png")
    return Seen(view, shot, browser.evaluate(LAYOUT), browser.evaluate(CONTRASTS))


def check_screenshot(seen: Seen, links: set[str]) -> Picture:
    """A PNG of the view's width, not blank, whose QR codes are the user's links, each once."""
    view, shot = seen.view, seen.screenshot
    pic = picture(shot)
    assert pic.width == view.width, (view, pic)
    assert pic.height >= view.height, (view, pic)  # the whole page, at least the window
    assert pic.spread > 20, f"{shot} looks blank: {pic}"
    assert decoded_qr_codes(shot) == links, shot
    return pic


def check_layout(seen: Seen) -> None:
    """Nothing wider than the window, every link readable in full, one QR code of a size a phone
    camera reads per server, the usage bar filled to the share used, and text with a contrast
    of at least 4.5 (WCAG AA) in light and dark."""
    view, layout = seen.view, seen.layout
    assert layout["pageWidth"] == view.width, layout
    assert layout["wider"] == [], layout
    assert layout["hiding"] == [], layout
    assert sorted(s["name"] for s in layout["servers"]) == sorted(SERVERS), layout
    for server in layout["servers"]:
        assert len(server["qrWidths"]) == 1, layout
        assert 200 <= server["qrWidths"][0] <= min(view.width, 320), layout
    assert abs(layout["filled"] - SHARE) < 0.005, layout
    for kind, ratio in seen.contrasts.items():
        assert ratio >= 4.5, f"{view.name}: {kind} has a contrast of {ratio:.2f}"


def test_the_page_in_chromium_as_phone_and_desktop_light_and_dark(
    vpn: Vpn, reality_site: int, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    # Chromium starts while the servers install (the first view waits for it).
    with chromium(tmp_path / "chromium") as browser:
        with ThreadPoolExecutor() as pool:  # the three installs at once: a third of the time
            installs = [
                pool.submit(install, vpn, reality_site, name="reality"),
                pool.submit(install_singbox, vpn, "trojan", "trojan"),
                pool.submit(install_singbox, vpn, "shadowsocks", "ss", "--method", SS_METHOD),
            ]
            for done in installs:
                done.result()
        with ThreadPoolExecutor() as pool:  # alice is added while `vpn web` starts
            added = pool.submit(add_alice, vpn)
            with web_server(vpn) as port:
                url = f"http://127.0.0.1:{port}/sub/{added.result()}"
                links = set(base64.b64decode(fetch(url).body).decode().split("\n"))
                assert len(links) == len(SERVERS)
                seen, checked = [], []
                for view in VIEWS:  # each screenshot is checked while the next view renders
                    seen.append(look(browser, url, view))
                    checked.append(pool.submit(check_screenshot, seen[-1], links))
                dom = browser.dom()  # the last view's: what `chromium --dump-dom` prints
                pictures = {
                    one.view: done.result() for one, done in zip(seen, checked, strict=True)
                }

    for one in seen:
        print(f"screenshot {one.view.name}: {one.screenshot}")
        record_property(f"screenshot-{one.view.name}", str(one.screenshot))
    for one in seen:
        check_layout(one)
    for size in ("phone", "desktop"):
        light, dark = (pictures[v] for v in VIEWS if v.name.startswith(size))
        assert dark.mean < 100, (light, dark)
        assert light.mean > 150, (light, dark)

    assert "<title>VPN: alice</title>" in dom
    assert USED in dom
    assert 'aria-valuenow="25"' in dom
    assert "Expires 2031-02-01 00:00 UTC" in dom
    assert dom.count("<svg") == len(SERVERS)
    for link in links:
        assert link.replace("&", "&amp;") in dom
