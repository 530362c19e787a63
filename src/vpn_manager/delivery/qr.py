"""QR codes of share links: as text for a terminal, and as a PNG file.

Both use error correction level M (15 % of the code can be lost) and the smallest QR version the
data fits in, with the quiet zone of four modules the QR standard asks for.

Terminal: `qr_text` draws two module rows per line with the Unicode half blocks `█ ▀ ▄` and
spaces. The glyphs draw the LIGHT modules (and the quiet zone) and leave the dark ones empty, as
`qrencode -t UTF8` does: on the usual dark terminal the code shows dark on light, the way a QR code
is printed, inside a light quiet zone, and every phone scanner reads it. Drawing the dark modules
instead would give a light-on-dark code with a black "quiet zone" there, which many scanners miss.
On a light terminal the code shows inverted (light on dark); most current scanners still read it,
and the PNG is there for the rest. No colours or escape codes, so the text can be piped and saved.

Web page: `qr_svg` draws the dark modules as one SVG path on white (with the quiet zone).

PNG: `png_bytes` draws black modules on white through pypng (no Pillow), `scale` pixels a
module; `qr_png` writes them atomically with mode 0600 (delivery.files): a share link is a
credential.

`qrcode` is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from vpn_manager.delivery.files import write_private
from vpn_manager.errors import InvalidInput

QUIET_ZONE = 4  # modules of light border on each side (the QR standard's minimum)
MAX_SCALE = 64
# (upper module light, lower module light) -> the character that draws the light halves.
_HALF_BLOCKS = {
    (True, True): "\u2588",  # █ full block
    (True, False): "\u2580",  # ▀ upper half block
    (False, True): "\u2584",  # ▄ lower half block
    (False, False): " ",
}
TEXT_CHARACTERS = frozenset(_HALF_BLOCKS.values())


def qr_text(data: str) -> str:
    """The QR code of `data` as lines of half blocks for a terminal, without a final newline.

    Each line holds two module rows; the light modules are drawn (see the module docstring). The
    line below the last module row, which the odd number of rows leaves half empty, is blank.
    """
    rows = _modules(data)
    lines = []
    for top in range(0, len(rows), 2):
        upper = rows[top]
        lower = rows[top + 1] if top + 1 < len(rows) else [True] * len(upper)  # dark: blank
        lines.append(
            "".join(_HALF_BLOCKS[not up, not down] for up, down in zip(upper, lower, strict=True))
        )
    return "\n".join(lines)


def qr_png(data: str, path: Path, *, scale: int = 8) -> None:
    """Write the QR code of `data` to `path` as a PNG, `scale` pixels a module, mode 0600
    (refused if `path` is a directory or a special file: delivery.files)."""
    png = png_bytes(data, scale=scale)
    write_private(path, png, hint="Give a PNG file name, or a directory for several codes.")


def png_bytes(data: str, *, scale: int = 8) -> bytes:
    """The QR code of `data` as a PNG, `scale` pixels a module (made before any file is
    written, so that a code too big for one writes nothing)."""
    if not 1 <= scale <= MAX_SCALE:
        raise InvalidInput(
            f"The QR code scale {scale} is out of range.",
            hint=f"Use 1 to {MAX_SCALE} pixels a module.",
        )
    from qrcode.image.pure import PyPNGImage  # type: ignore[import-untyped, unused-ignore]

    code = _code(data, box_size=scale)
    image = code.make_image(image_factory=PyPNGImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def qr_svg(data: str, *, title: str = "") -> str:
    """The QR code of `data` as an inline SVG element: one path of the dark modules on a white
    square, quiet zone included, scaling to whatever width the page gives it."""
    rows = _modules(data)
    size = len(rows)
    path = "".join(
        f"M{x} {y}h1v1h-1z" for y, row in enumerate(rows) for x, dark in enumerate(row) if dark
    )
    label = f"<title>{_xml_text(title)}</title>" if title else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'shape-rendering="crispEdges" role="img">{label}'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path d="{path}" fill="#000"/></svg>'
    )


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _modules(data: str) -> list[list[bool]]:
    """The code's modules, quiet zone included; True is dark."""
    matrix: list[list[bool]] = [
        [bool(module) for module in row] for row in _code(data).get_matrix()
    ]
    return matrix


def _code(data: str, *, box_size: int = 1) -> Any:
    """A `qrcode.QRCode` of `data` at level M, in the smallest version it fits."""
    import qrcode  # type: ignore[import-untyped, unused-ignore]
    from qrcode.exceptions import DataOverflowError  # type: ignore[import-untyped, unused-ignore]

    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=QUIET_ZONE
    )
    code.add_data(data)
    try:
        code.make(fit=True)
    except (DataOverflowError, ValueError):  # qrcode 8.2 says "Invalid version (was 41 …)"
        raise InvalidInput(
            f"The text is too long for a QR code ({len(data.encode())} bytes).",
            hint="A QR code at error correction level M holds at most 2331 bytes.",
        ) from None
    return code
