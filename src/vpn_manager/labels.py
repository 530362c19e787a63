"""The label a client app shows for one user's link to one server: `USER@SERVER` by default, or
the `links.label` template of the settings. One place makes it for every link, QR code, client
config and subscription, so that an app lists a user's servers apart (every link used to carry
the bare user name, and an app showed five identical entries).

A template holds `{user}` and must hold `{server}` (without it, a user's labels would be alike
again, and a subscription's profiles need one name per server). No pydantic here: the settings
check a template with `check_template`, the services fill it with `link_label`.
"""

from __future__ import annotations

import re
import string

DEFAULT_TEMPLATE = "{user}@{server}"
FIELDS = ("user", "server")
# With each field once and names of at most 64 characters, a label stays within the 200
# characters of a link's name (links.fields).
TEMPLATE_MAX = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_template(template: str) -> str:
    """`template` if it makes labels; ValueError with one sentence saying what is wrong."""
    if not template.strip() or len(template) > TEMPLATE_MAX or _CONTROL.search(template):
        raise ValueError(
            f"use 1 to {TEMPLATE_MAX} characters without control characters, such as "
            f"{DEFAULT_TEMPLATE}"
        )
    try:
        fields = [part[1:] for part in string.Formatter().parse(template) if part[1] is not None]
    except ValueError:
        raise ValueError("a lone '{' or '}': write {{ or }} for a brace itself") from None
    for name, spec, conversion in fields:
        if name not in FIELDS:
            raise ValueError(f"only the fields {{user}} and {{server}} can be used, not {{{name}}}")
        if spec or conversion:
            raise ValueError(f"write {{{name}}} without a format or conversion")
    names = [name for name, _, _ in fields]
    if len(set(names)) < len(names):
        raise ValueError("use {user} and {server} once each at most")
    if "server" not in names:
        raise ValueError("the label must hold {server}, so that apps tell a user's servers apart")
    return template


def link_label(user: str, server: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The label of `user`'s link to `server` (a template checked by `check_template`)."""
    return template.format(user=user, server=server)
