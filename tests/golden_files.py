"""The one golden-file check: rendered text (server configs, links, client configs) compared whole
with a file under tests/golden/. After a deliberate change, rewrite the files and review the diff:

    VPN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_delivery.py   # or any test that checks them
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = "VPN_UPDATE_GOLDEN"  # =1: write the golden files from what the tests render


def assert_golden(path: Path, text: str) -> None:
    """`text` is the golden file at `path`, whole (with VPN_UPDATE_GOLDEN=1 it is written first)."""
    if os.environ.get(UPDATE) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; create it with {UPDATE}=1"
    assert text == path.read_text(encoding="utf-8")
