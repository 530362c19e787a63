"""The record of cuts owed (services/owed_cuts.py): users merged in, taken out, the file gone when
empty, written private and atomically, a damaged file read as nothing owed, a killed write's temp
file swept."""

from __future__ import annotations

import stat
from pathlib import Path

from vpn_manager.services import owed_cuts


def test_names_are_merged_and_taken_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert owed_cuts.owed(run, "edge") == set()
    owed_cuts.owe(run, "edge", ["user-1"])
    owed_cuts.owe(run, "edge", ["user-2", "user-1"])  # a second command before any cut
    owed_cuts.owe(run, "other", ["user-9"])
    assert owed_cuts.owed(run, "edge") == {"user-1", "user-2"}
    owed_cuts.paid(run, "edge", ["user-1"])
    assert owed_cuts.owed(run, "edge") == {"user-2"}
    owed_cuts.paid(run, "edge", ["user-2", "user-3"])
    assert owed_cuts.owed(run, "edge") == set()
    assert sorted(p.name for p in run.iterdir()) == ["other.cuts.json"]
    assert owed_cuts.owed(run, "other") == {"user-9"}


def test_the_file_is_private_and_leaves_no_temp(tmp_path: Path) -> None:
    run = tmp_path / "run"
    owed_cuts.owe(run, "edge", ["user-1"])
    assert [p.name for p in run.iterdir()] == ["edge.cuts.json"]
    assert stat.S_IMODE((run / "edge.cuts.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    owed_cuts.owe(run, "edge", [])
    owed_cuts.paid(run, "edge", [])
    assert owed_cuts.owed(run, "edge") == {"user-1"}


def test_nothing_owed_writes_nothing(tmp_path: Path) -> None:
    owed_cuts.owe(tmp_path / "run", "edge", [])
    owed_cuts.forget(tmp_path / "run", "edge")
    assert not (tmp_path / "run").exists()


def test_a_damaged_file_reads_as_nothing_owed_and_is_replaced(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for damaged in ("{not json", '{"user-1": 1}', ""):
        (run / "edge.cuts.json").write_text(damaged)
        assert owed_cuts.owed(run, "edge") == set()
    owed_cuts.owe(run, "edge", ["user-4"])
    assert owed_cuts.owed(run, "edge") == {"user-4"}


def test_a_killed_writes_temp_file_is_swept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    owed_cuts.owe(run, "edge", ["user-1"])
    (run / ".edge.cuts.json.abcd1234.tmp").write_text("[")
    (run / ".other.cuts.json.abcd1234.tmp").write_text("[")
    assert owed_cuts.sweep(run, "edge") == 1
    assert sorted(p.name for p in run.iterdir()) == [
        ".other.cuts.json.abcd1234.tmp",
        "edge.cuts.json",
    ]
    assert owed_cuts.owed(run, "edge") == {"user-1"}
