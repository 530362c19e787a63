"""Errors in the TUI's words. The services and models say what to change the way the CLI asks
for it (`--quota`, `vpn user grant NAME SERVER`); on a screen the user has fields and keys
instead, so the TUI names those. One mapping, here, rather than front-end words in the services.
"""

from __future__ import annotations

import re

# CLI option -> the label of the TUI field that takes the same value (user form, install form,
# server settings). Options the TUI has no field for keep their CLI name.
FIELD_LABELS = {
    "--name": "Name",
    "--email": "E-mail",
    "--note": "Note",
    "--quota": "Quota",
    "--reset": "Quota resets",
    "--expires": "Expires",
    "--first-use-days": "Expire after first use",
    "--devices": "Devices at once",
    "--server": "Servers",
    "--port": "Port",
    "--listen": "Listen on",
    "--host": "Client address",
    "--sni": "SNI",
    "--dest": "Dest",
    "--method": "Cipher",
}
# Commands a hint suggests -> where the same action is in the TUI.
COMMANDS = [
    (re.compile(r"`?vpn user grant [^`\s]+ [^`\s.]+`?"), "g (grant) on the Users screen"),
    (re.compile(r"`?vpn user show [^`\s.]+`?"), "Enter on the user's row"),
    (re.compile(r"`?vpn user link [^`\s.]+`?"), "Enter on the user's row"),
]
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def in_tui_words(text: str) -> str:
    """`text` with CLI options replaced by their field labels (quoted) and suggested commands by
    the TUI's way to do the same."""
    for pattern, replacement in COMMANDS:
        text = pattern.sub(replacement, text)

    def label(match: re.Match[str]) -> str:
        flag = match.group(0)
        return f'"{FIELD_LABELS[flag]}"' if flag in FIELD_LABELS else flag

    text = _FLAG.sub(label, text)
    return text[:1].upper() + text[1:]
