"""Ctrl-C around the steps that must not be cut in two (services/locks.py), with real SIGINTs
raised in this process: held back for a commit and delivered after it, ignored while undoing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from vpn_manager.services.locks import interrupt_after, no_interrupt


@pytest.fixture
def seen() -> Iterator[list[str]]:
    """The SIGINTs the process's own handler got (what asyncio's would cancel the task on)."""
    got: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        got.append("sigint")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_a_commit_takes_effect_once_it_has_ended(seen: list[str]) -> None:
    with interrupt_after():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # pressed twice: one interruption
        assert seen == []  # the commit goes on
    assert seen == ["sigint"]
    signal.raise_signal(signal.SIGINT)
    assert seen == ["sigint", "sigint"]  # the handler is back


def test_without_ctrl_c_nothing_is_delivered(seen: list[str]) -> None:
    with interrupt_after():
        pass
    assert seen == []


def test_ctrl_c_while_undoing_is_ignored(seen: list[str]) -> None:
    with no_interrupt():
        signal.raise_signal(signal.SIGINT)
    assert seen == []
    signal.raise_signal(signal.SIGINT)
    assert seen == ["sigint"]
