"""The subprocess seam's synchronous form (run_sync), which the ssh tunnel uses, and children that
do not outlive us (die_with_parent)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from vpn_manager.errors import EngineError, EngineMissing
from vpn_manager.proc import die_with_parent, run_sync


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


def _gone(pid: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[1].startswith("Z"):
                    return True  # ended, not yet reaped
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_the_child_dies_when_its_parent_is_killed() -> None:
    """A parent killed (-9) takes its child with it."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from vpn_manager.proc import die_with_parent\n"
            "child = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_parent())\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert not _gone(child, 0.3)
    parent.kill()
    parent.wait()
    assert _gone(child), "the child outlived its killed parent"


def test_a_child_whose_maker_is_already_gone_ends_at_once() -> None:
    """Made for one process but started by another (here: a fork of it, standing in for the
    parent killed between the fork and the request), the child ends instead of living on."""
    made_here = die_with_parent()
    reader, writer = os.pipe()
    forked = os.fork()
    if forked == 0:  # the fork: start the child with this process's preexec_fn
        os.close(reader)
        try:
            child = subprocess.Popen(["sleep", "60"], preexec_fn=made_here)  # noqa: PLW1509 (one thread here)
            code = child.wait(timeout=10)
            os.write(writer, str(code).encode())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(forked, 0)
    with os.fdopen(reader) as result:
        assert result.read() == "1"
