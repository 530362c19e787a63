"""The label a client app shows for a link (vpn_manager.labels): USER@SERVER, or the
`links.label` template, checked when the settings load (tests/test_cli_config.py has the
refusals as the CLI says them)."""

from __future__ import annotations

import re

import pytest

from vpn_manager.labels import DEFAULT_TEMPLATE, check_template, link_label
from vpn_manager.links import VlessRealityLink, parse_link
from vpn_manager.links.uri import fragment


def test_the_default_label_is_user_at_server() -> None:
    assert DEFAULT_TEMPLATE == "{user}@{server}"
    assert link_label("alice", "edge") == "alice@edge"
    assert link_label("alice", "edge", "{server}") == "edge"
    assert link_label("a.b", "x_y", "{server} ({user})") == "x_y (a.b)"
    assert link_label("alice", "edge", "{{{user}}} {server}") == "{alice} edge"


@pytest.mark.parametrize(
    "template", ["{user}@{server}", "{server}", "VPN {server}", "{server}: {user}", "{{x}}{server}"]
)
def test_templates_that_name_the_server_are_taken(template: str) -> None:
    assert check_template(template) == template


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{user}", "must hold {server}"),
        ("alice", "must hold {server}"),
        ("{user}@{host}", "not {host}"),
        ("{}@{server}", "not {}"),
        ("{0}", "not {0}"),
        ("{user.name}@{server}", "not {user.name}"),
        ("{user[0]}@{server}", "not {user[0]}"),
        ("{server!r}", "without a format or conversion"),
        ("{user}{user}{user}{server}", "once each at most"),
        ("{server:>10}", "without a format or conversion"),
        ("{server", "a lone '{' or '}'"),
        ("server}", "a lone '{' or '}'"),
        ("", "use 1 to 64 characters"),
        ("   ", "use 1 to 64 characters"),
        ("x" * 60 + "{server}", "use 1 to 64 characters"),
        ("{user}\n{server}", "use 1 to 64 characters"),
        ("\u202e{server}", "use 1 to 64 characters"),
    ],
)
def test_other_templates_are_refused_with_one_sentence(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as refused:
        check_template(template)
    assert "\n" not in str(refused.value)


def test_the_label_keeps_its_at_sign_in_a_fragment_and_reads_back() -> None:
    label = link_label("alice", "edge-1")
    assert fragment(label) == "alice@edge-1"
    assert fragment("a b@c#d") == "a%20b@c%23d"
    uri = (
        "vless://fcbd9ac6-d945-4570-bc1a-e24ba7ed478c@vpn.example.com:443?encryption=none"
        "&security=reality&sni=www.example.org&fp=chrome"
        "&pbk=KjjZSyjx_U0f8eq8AQtAat9aeKafjBf-JGJnH0Twxgk&sid=cf&type=tcp#" + fragment(label)
    )
    link = VlessRealityLink.parse(uri)
    assert (link.name, link.host, link.uuid[:8]) == ("alice@edge-1", "vpn.example.com", "fcbd9ac6")
    assert link.to_uri() == uri
    assert parse_link(uri.replace("#alice@", "#alice%40")).name == "alice@edge-1"


def test_the_longest_label_fits_a_link_name() -> None:
    template = "x" * 50 + "{user}{server}"
    assert check_template(template)
    longest = link_label("u" * 64, "s" * 64, template)  # names are 64 characters at most
    assert len(longest) == 178  # within a link name's 200 characters
