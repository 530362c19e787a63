"""Client delivery: what a user gets to connect with. Pure functions, no I/O except `qr_png`.

- `links`: the `vless://` share link of a VLESS+REALITY account (`VlessRealityLink`).
- `qr`: the link as a QR code, for a terminal (`qr_text`) or as a PNG file (`qr_png`).
- `clients`: ready-to-run Xray and sing-box client configs built from a link.

Core code: no front-end library, and nothing heavy at import (`qrcode` loads on first use).
"""

from vpn_manager.delivery.clients import singbox_client_config, xray_client_config
from vpn_manager.delivery.links import PARAMETER_ORDER, VlessRealityLink
from vpn_manager.delivery.qr import qr_png, qr_text

__all__ = [
    "PARAMETER_ORDER",
    "VlessRealityLink",
    "qr_png",
    "qr_text",
    "singbox_client_config",
    "xray_client_config",
]
