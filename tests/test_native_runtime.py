"""The native runtime with real processes (`sleep` stands in for an engine: the runtime does not
care what it runs): detached, found again, never started twice, stopped, and seen dead after
SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from vpn_manager.runtimes.base import Launch
from vpn_manager.runtimes.native import NativeRuntime, tail


def launch(tmp_path: Path, runtime: NativeRuntime) -> Launch:
    return Launch("s1", ["sleep", "60"], runtime.log_file("s1"))


def test_start_is_idempotent_and_concurrent_starts_make_one_process(tmp_path: Path) -> None:
    runtime = NativeRuntime(tmp_path / "run", tmp_path / "logs")

    async def both() -> tuple[int, int]:
        first, second = await asyncio.gather(
            runtime.start(launch(tmp_path, runtime)),
            NativeRuntime(tmp_path / "run", tmp_path / "logs").start(launch(tmp_path, runtime)),
        )
        return first, second

    try:
        first, second = asyncio.run(both())
        assert first == second
        again = asyncio.run(runtime.start(launch(tmp_path, runtime)))
        assert again == first
        # A later command (a new runtime object) finds the same process.
        state = NativeRuntime(tmp_path / "run", tmp_path / "logs").state("s1")
        assert state.running
        assert state.pid == first
        assert state.rss_bytes
        assert state.started_at is not None
        assert Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
        assert os.getsid(first) == first, "the engine runs in its own session"
    finally:
        assert asyncio.run(runtime.stop("s1"))
    assert not runtime.state("s1").running
    assert not runtime.pid_file("s1").exists()
    assert not asyncio.run(runtime.stop("s1"))


def test_a_killed_process_is_seen_as_stopped(tmp_path: Path) -> None:
    runtime = NativeRuntime(tmp_path / "run", tmp_path / "logs")
    pid = asyncio.run(runtime.start(launch(tmp_path, runtime)))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while runtime.state("s1").running and time.monotonic() < deadline:
        runtime.exited("s1")  # reap our child, as the supervising command would
        time.sleep(0.02)
    assert not runtime.state("s1").running
    new = asyncio.run(runtime.start(launch(tmp_path, runtime)))
    try:
        assert new != pid
        assert runtime.state("s1").running
    finally:
        asyncio.run(runtime.stop("s1"))


def test_tail_reads_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert tail(log, 3) == ["line 9997", "line 9998", "line 9999"]
    assert tail(tmp_path / "missing.log", 3) == []


def test_follow_files_gives_the_end_then_new_lines(tmp_path: Path) -> None:
    """`vpn server logs --follow` for native servers: the tail of each file, then what is
    appended (also to a file that did not exist yet), whole lines only."""
    from vpn_manager.runtimes.native import follow_files

    engine_log, later = tmp_path / "engine.log", tmp_path / "later.log"
    engine_log.write_text("one\ntwo\nthree\n")
    lines = follow_files([engine_log, later], 2, poll=0.01)
    assert [next(lines), next(lines)] == ["two", "three"]
    with engine_log.open("a") as handle:
        handle.write("four\nfi")
    assert next(lines) == "four"
    later.write_text("elsewhere\n")
    assert next(lines) == "elsewhere"
    with engine_log.open("a") as handle:
        handle.write("ve\n")
    assert next(lines) == "five"


def test_logs_an_earlier_version_left_readable_are_made_private_at_start(tmp_path: Path) -> None:
    """Access logs hold clients' addresses: a start tightens what an older version left 0644
    (and a 0755 logs directory), so other local users cannot read them."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    os.chmod(logs, 0o755)
    old = {logs / "s1.log", logs / "s1.access.log", logs / "other.error.log"}
    for path in old:
        path.write_text("203.0.113.7 accepted\n")
        os.chmod(path, 0o644)
    runtime = NativeRuntime(tmp_path / "run", logs)
    try:
        asyncio.run(runtime.start(launch(tmp_path, runtime)))
    finally:
        asyncio.run(runtime.stop("s1"))
    assert logs.stat().st_mode & 0o777 == 0o700
    for path in old:
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.read_text().startswith("203.0.113.7"), "nothing is lost"
