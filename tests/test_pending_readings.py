"""The last readings kept before an engine resets (services/pending_readings.py)."""

from __future__ import annotations

from pathlib import Path

from vpn_manager.engines.base import Counter
from vpn_manager.services import pending_readings as spool


def test_readings_are_kept_in_order_until_counted(tmp_path: Path) -> None:
    assert spool.pending(tmp_path, "edge") is None  # no file: nothing to count or delete
    first = [Counter("user-1", "user-1", 10, 20)]
    second = [Counter("conn:a", "user-2", 1, 2), Counter("conn:b", "user-2", 3, 4)]
    spool.keep(tmp_path, "edge", "100@5", first)
    spool.keep(tmp_path, "edge", "100@5", second)
    assert spool.pending(tmp_path, "edge") == [("100@5", first), ("100@5", second)]
    assert spool.pending(tmp_path, "other") is None
    assert (tmp_path / "edge.settle.json").stat().st_mode & 0o777 == 0o600
    spool.done(tmp_path, "edge")
    assert spool.pending(tmp_path, "edge") is None


def test_a_damaged_file_counts_nothing(tmp_path: Path) -> None:
    (tmp_path / "edge.settle.json").write_text('[{"epoch": "1@1", "counters": [["k", "u", 1')
    assert spool.pending(tmp_path, "edge") == []
    spool.keep(tmp_path, "edge", "2@2", [Counter("k", "u", 5, 6)])
    assert spool.pending(tmp_path, "edge") == [("2@2", [Counter("k", "u", 5, 6)])]
