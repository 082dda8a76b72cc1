"""bench/soak.py, the short run CI makes: writers and readers against the real server for 10 s.

Speed is printed, never asserted; what is asserted is what a user relies on under
load: no 5xx, no "database is locked", every acknowledged requestId stored exactly
once, the overview and usage equal to a raw recount, and a WAL that stays bounded.
"""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import soak  # noqa: E402


@pytest.mark.sqlite_only
def test_ten_seconds_of_writers_and_readers_lose_nothing(tmp_path, capsys):
    out = tmp_path / "soak.json"
    figures = soak.main(["--seconds", "10", "--checkpoint-seconds", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == figures
    assert figures["batches"] > 0 and figures["requests"] > figures["batches"]
    assert figures["http_5xx"] == figures["other_errors"] == figures["database_locked"] == 0
    assert figures["lost_ids"] == figures["doubled_ids"] == 0
    assert figures["overview_equals_recount"] and figures["usage_equals_recount"]
    assert figures["wal_mb"] < 4 * max(figures["db_mb"], 4)
    printed = capsys.readouterr().out
    assert "overview_p50_ms" in printed and "wal_mb" in printed
