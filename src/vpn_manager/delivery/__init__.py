"""Client delivery: how a user's link reaches them. The links and client configs themselves are
built in `vpn_manager.links`.

- `qr`: a link as a QR code, for a terminal (`qr_text`) or as a PNG file (`qr_png`);
- `files`: the files credentials are handed out in, 0600 and only over a regular file.

Core code: no front-end library, and nothing heavy at import (`qrcode` loads on first use).
"""

from vpn_manager.delivery.qr import qr_png, qr_text

__all__ = ["qr_png", "qr_text"]
