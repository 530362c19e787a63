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
    "--transport": "Transport",
    "--security": "Security",
    "--path": "Path",
    "--service-name": "gRPC service",
    "--host-header": "Host header",
    "--xhttp-mode": "XHTTP mode",
    "--cert": "Certificate",
    "--key": "Key",
    "--decoy": "Decoy",
}
# Commands a hint suggests -> where the same action is in the TUI. An argument is a word (no
# space, backquote or full stop), so the sentence around it stays whole.
_ARG = r" [^`\s.]+"
COMMANDS = [
    (re.compile(rf"`?vpn user grant{_ARG}{_ARG}`?"), "g (grant) on the Users screen"),
    (re.compile(rf"`?vpn user (?:show|link){_ARG}`?"), "Enter on the user's row"),
    (re.compile(r"`?vpn user update`?"), "e (edit) on the Users screen"),
    (re.compile(r"`?vpn user list`?"), "the Users screen (2)"),
    (re.compile(rf"`?vpn server start{_ARG}`?"), "press s (start) on the Servers screen"),
    (re.compile(rf"`?vpn server logs{_ARG}`?"), "the server's logs (Enter on its row)"),
    (re.compile(r"`?vpn server list`?"), "the Servers screen (3)"),
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


def who(names: list[str]) -> str:
    """Users named in a sentence: a few by name, more by number."""
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} users"
