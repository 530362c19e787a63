"""Headless Chromium (Debian's `chromium`) for end-to-end tests of pages, driven over the DevTools
protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, read by the
browser on fd 3 and written on fd 4). One browser serves every view of a test, where
`chromium --screenshot` or `--dump-dom` would start one for each: a start costs 2-4 s here, a view
well under one. The browser starts when `chromium()` is entered and is first waited for by the
first view, so a test can set up meanwhile.

A view is a window size and a colour scheme (`prefers-color-scheme`), as a phone or a desktop
browser in light or dark mode shows the page; a screenshot is of the whole page at the view's
width. `picture` checks a screenshot is a whole PNG and measures its pixels.

Nothing here talks to anything but the browser it started, which the tests point at 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import png  # type: ignore[import-untyped]  # pypng ships no types
import pytest

INSTALL = (
    "Debian's chromium is missing: install it with "
    "`apt-get install -y --no-install-recommends chromium` (scripts/setup --dev does)."
)
DEADLINE_S = 20.0  # for any one answer of the browser
# Run as `python -c ON_FDS_3_AND_4 READ_FD WRITE_FD ARGV…`: puts the two pipe ends on the fds
# --remote-debugging-pipe uses (copied above 10 first, so that neither dup2 closes the other's
# source), then becomes ARGV. (A preexec_fn would do it in the forked child, which is unsafe
# while the test's other threads run.)
ON_FDS_3_AND_4 = """
import fcntl, os, sys
reads, writes = (fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 10) for fd in sys.argv[1:3])
os.dup2(reads, 3)
os.dup2(writes, 4)
for fd in sys.argv[1:3]:
    if int(fd) not in (3, 4):
        os.close(int(fd))
os.execv(sys.argv[3], sys.argv[3:])
"""


@dataclass(frozen=True)
class View:
    name: str  # e.g. "phone-light", which names the screenshot
    width: int
    height: int
    dark: bool = False

    @property
    def mobile(self) -> bool:
        return self.width < 600


class BrowserError(AssertionError):
    pass


class Browser:
    """One headless Chromium, and one tab in it."""

    def __init__(self, process: subprocess.Popen[bytes], send: int, receive: int, log: Path):
        self.process = process
        self._send = send
        self._receive = receive
        self._log = log
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None  # the tab's, once the first view opens it

    def _open_tab(self) -> None:
        """The tab, opened by the first view (the browser starts meanwhile)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self._session = attached["sessionId"]
        self.call("Page.enable", tab=True)

    def call(self, method: str, *, tab: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the tab, or else to the browser) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if tab:
            message["sessionId"] = self._session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._message()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method} failed: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result
            self._events.append(answer)

    def _wait_for(self, event: str) -> dict[str, Any]:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == event and message.get("sessionId") == self._session:
                    return self._events.pop(index)
            self._events.append(self._message())

    def _message(self) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._receive], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"chromium did not answer in {DEADLINE_S:.0f} s{self._tail()}")
            chunk = os.read(self._receive, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited ({self.process.poll()}){self._tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _tail(self) -> str:
        lines = self._log.read_text(errors="replace").splitlines()[-15:]
        return ": " + "\n".join(lines) if lines else ""

    def show(self, url: str, view: View) -> None:
        """Load `url` as `view` sees it, and wait until it has loaded."""
        if self._session is None:
            self._open_tab()
        self.call(
            "Emulation.setDeviceMetricsOverride",
            tab=True,
            width=view.width,
            height=view.height,
            deviceScaleFactor=1,
            mobile=view.mobile,
        )
        scheme = "dark" if view.dark else "light"
        self.call(
            "Emulation.setEmulatedMedia",
            tab=True,
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )
        self._events.clear()  # so that the load awaited below is this one's
        navigated = self.call("Page.navigate", tab=True, url=url)
        if "errorText" in navigated:
            raise BrowserError(f"chromium could not load {url}: {navigated['errorText']}")
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serializable)."""
        result = self.call("Runtime.evaluate", tab=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dom(self) -> str:
        """The page's DOM as HTML, as `chromium --dump-dom` prints it."""
        html: str = self.evaluate("document.documentElement.outerHTML")
        return html

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (the view's width, the page's height)."""
        shot = self.call(
            "Page.captureScreenshot",
            tab=True,
            format="png",
            captureBeyondViewport=True,
            optimizeForSpeed=True,  # every row filtered "Up": `picture` reads them quickly
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def chromium(workdir: Path) -> Iterator[Browser]:
    """A headless Chromium with a profile of its own in `workdir`; its stderr is in
    workdir/chromium.log. Fails the test (never skips it) if chromium is not installed."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(INSTALL)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "chromium.log"
    to_browser_read, to_browser_write = os.pipe()
    from_browser_read, from_browser_write = os.pipe()

    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                ON_FDS_3_AND_4,
                str(to_browser_read),
                str(from_browser_write),
                binary,
                "--headless",
                "--no-sandbox",  # tests run as root here, where the sandbox refuses to start
                "--disable-gpu",
                "--remote-debugging-pipe",
                f"--user-data-dir={workdir / 'profile'}",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "about:blank",
            ],
            pass_fds=(to_browser_read, from_browser_write),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            # No session bus here: without this chromium tries it and waits.
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"},
        )
    os.close(to_browser_read)
    os.close(from_browser_write)
    try:
        yield Browser(process, to_browser_write, from_browser_read, log)
    finally:
        try:
            os.write(to_browser_write, json.dumps({"id": 0, "method": "Browser.close"}).encode())
            os.write(to_browser_write, b"\0")
            process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(5)
        os.close(to_browser_write)
        os.close(from_browser_read)


@dataclass(frozen=True)
class Picture:
    """What a screenshot holds: its size, and the brightness of its pixels (0-255; sampled)."""

    width: int
    height: int
    mean: float
    spread: float  # standard deviation


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4}  # PNG colour type: RGB, RGBA (8 bits each)
STEP = 4  # every 4th pixel of every 4th row is measured


def picture(path: Path) -> Picture:
    """Read a PNG screenshot and measure its pixels; an AssertionError if it is not a whole,
    valid PNG. Chromium, asked to encode for speed, filters every row with "Up" (or none), which
    is undone here for the measured columns alone; any other file is read by pypng."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    chunks: dict[bytes, bytes] = {}
    at = len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: the {kind!r} chunk is damaged"
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    assert b"IEND" in chunks, f"{path} is cut short"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    channels = CHANNELS.get(colour) if (depth, interlace) == (8, 0) else None
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * (channels or 0) + 1
    if channels is None or not set(raw[::stride]) <= {0, 2}:
        return _picture_by_pypng(path)
    assert len(raw) == height * stride, f"{path}: the image data is not {width}x{height}"
    sampled: list[int] = []
    columns = len(range(0, width, STEP))
    above: list[list[int]] = [[0] * columns for _ in range(3)]  # red, green, blue
    for y in range(height):
        line = raw[y * stride + 1 : (y + 1) * stride]
        rgb = [list(line[c :: STEP * channels]) for c in range(3)]
        if raw[y * stride] == 2:  # Up: each byte adds to the one above it
            rgb = [
                [(byte + up) & 0xFF for byte, up in zip(now, then, strict=True)]
                for now, then in zip(rgb, above, strict=True)
            ]
        above = rgb
        if y % STEP == 0:
            sampled.extend(map(sum, zip(*rgb, strict=True)))
    return Picture(width, height, statistics.fmean(sampled) / 3, statistics.pstdev(sampled) / 3)


def _picture_by_pypng(path: Path) -> Picture:
    width, height, rows, _info = png.Reader(filename=str(path)).asRGB8()
    sampled: list[int] = []
    for y, row in enumerate(rows):
        if y % STEP == 0:
            sampled.extend(row[x] + row[x + 1] + row[x + 2] for x in range(0, width * 3, STEP * 3))
    return Picture(width, height, statistics.fmean(sampled) / 3, statistics.pstdev(sampled) / 3)
