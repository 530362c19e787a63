"""The subprocess seam's synchronous form (run_sync), which the ssh tunnel uses."""

from __future__ import annotations

import time

import pytest

from vpn_manager.errors import EngineError, EngineMissing
from vpn_manager.proc import run_sync


def test_run_sync_returns_output_and_code() -> None:
    done = run_sync(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_run_sync_failure_carries_the_last_stderr_line() -> None:
    with pytest.raises(EngineError, match=r"failed: second$"):
        run_sync(["sh", "-c", "echo first >&2; echo second >&2; exit 1"])


def test_run_sync_missing_program() -> None:
    with pytest.raises(EngineMissing, match="is not installed"):
        run_sync(["no-such-program-here"])


def test_run_sync_does_not_wait_for_what_the_command_left_behind() -> None:
    """Like `ssh -f`: the command exits, a child it started keeps running (and its output)."""
    started = time.monotonic()
    done = run_sync(["sh", "-c", "sleep 3 & echo forked"])
    assert done.stdout == "forked\n"
    assert time.monotonic() - started < 2


def test_run_sync_timeout_is_an_error() -> None:
    with pytest.raises(EngineError, match="did not finish within 1 s"):
        run_sync(["sleep", "5"], timeout=1)


def test_run_timeout_is_an_engine_error_and_the_command_is_killed() -> None:
    """A command that overruns its deadline is the project's error with one sentence (the CLI
    prints it), not a bare TimeoutError that reads as an internal error; it is killed."""
    import asyncio

    from vpn_manager.proc import run

    started = time.monotonic()
    with pytest.raises(EngineError, match=r"`sleep 30` did not finish within 0.2 s"):
        asyncio.run(run(["sleep", "30"], timeout=0.2))
    assert time.monotonic() - started < 5
