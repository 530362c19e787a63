"""The device-ban table in the host's nftables (root, as the service runs): bans carry their
owner, and lifting some leaves the others."""

from __future__ import annotations

import asyncio
import os

import pytest

from vpn_manager.engines import bans

PORT = 65011  # only a number in the table's elements: nothing listens or is sent


@pytest.fixture(autouse=True)
def _root_and_clean() -> object:
    if os.geteuid() != 0 or not bans.available():
        pytest.fail("the ban tests need root and nft (apt-get install nftables; run as root)")
    yield
    asyncio.run(bans.unban_port(PORT))


def test_bans_carry_their_owner_and_lift_one_by_one() -> None:
    asyncio.run(bans.ban({"192.0.2.7", "2001:db8::7"}, PORT, 60, bans.owner("aaaa1111", 7, 1)))
    asyncio.run(bans.ban({"192.0.2.8"}, PORT, 60, bans.owner("bbbb2222", 8, 2)))
    listed = {b for b in asyncio.run(bans.listed()) if b.port == PORT}
    assert {(b.ip, b.user_limit("aaaa1111")) for b in listed} == {
        ("192.0.2.7", (7, 1)),
        ("2001:db8::7", (7, 1)),
        ("192.0.2.8", None),  # another home's
    }
    assert next(b for b in listed if b.ip == "192.0.2.8").user_limit("bbbb2222") == (8, 2)
    gone = bans.Ban("192.0.2.99", PORT)  # not there: lifting it is no error, nor stops the rest
    asyncio.run(bans.lift([b for b in listed if b.user_limit("aaaa1111")] + [gone]))
    assert asyncio.run(bans.banned(PORT)) == {"192.0.2.8"}


def test_a_repeated_ban_restarts_its_clock_and_keeps_one_element() -> None:
    asyncio.run(bans.ban({"192.0.2.9"}, PORT, 5, bans.owner("aaaa1111", 9, 1)))
    asyncio.run(bans.ban({"192.0.2.9"}, PORT, 60, bans.owner("aaaa1111", 9, 1)))
    assert [b.ip for b in asyncio.run(bans.listed()) if b.port == PORT] == ["192.0.2.9"]
