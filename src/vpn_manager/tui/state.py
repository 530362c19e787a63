"""What the TUI remembers between runs (the theme), in a small JSON file in the config directory.

Kept apart from config.toml: that file is the user's, and validated strictly; this one is ours,
and a damaged or unknown value just falls back to the default.
"""

from __future__ import annotations

import json
from pathlib import Path

from vpn_manager.fsutil import atomic_write
from vpn_manager.settings import Paths

DARK = "textual-dark"
LIGHT = "textual-light"
THEMES = (DARK, LIGHT)


def state_file(paths: Paths) -> Path:
    return paths.config_dir / "tui.json"


def load_theme(paths: Paths) -> str:
    try:
        data = json.loads(state_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DARK
    theme = data.get("theme") if isinstance(data, dict) else None
    return theme if theme in THEMES else DARK


def save_theme(paths: Paths, theme: str) -> None:
    atomic_write(state_file(paths), json.dumps({"theme": theme}) + "\n")
