"""The benchmark script runs end to end (a tiny smoke run; no timing is asserted)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.sqlite_only  # the benchmark measures the embedded SQLite default


def test_smoke_run_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", "1500", "--smoke", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "overview p50 ms" in printed and str(out) in printed
    (result,) = json.loads(out.read_text())["results"]
    assert result["logs"] == 1500
    assert result["overview_errors"] == 0
    for key in ("overview_p50_ms", "overview_p95_ms", "models_p50_ms", "overview_rps",
                "ingest_rows_per_s", "rss_mb", "floor_p50_ms", "ratio"):
        assert result[key] > 0, key


def test_proxy_bench_smoke_run_streams_both_ways_and_logs_each_proxied_stream(tmp_path, capsys):
    import proxy_bench
    out = tmp_path / "proxy_bench.json"
    assert proxy_bench.main(["--sequential", "10", "--warmup", "2", "--seconds", "1", "--load", "python",
                             "--streams", "4", "--stream-seconds", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "added" in printed and "chat over Responses (translation)" in printed
    result = json.loads(out.read_text())["results"]
    assert result["proxied_errors"] == result["direct_errors"] == result["streams_incomplete"] == 0
    assert result["streams_complete"] == 4 and result["proxied_rps"] > 0
    # The Chat Completions streams beside the Responses ones (each one checked complete: [DONE] came).
    assert result["chat_ttfb_p50_ms"] > 0 and result["chat_last_p50_ms"] >= result["chat_ttfb_p50_ms"]
    assert result["chat_translation_ttfb_p50_ms"] == round(
        result["added_chat_ttfb_p50_ms"] - result["added_ttfb_p50_ms"], 3)
    # Only ok logs: the sequential streams' (Responses and chat), the load's (however many fit in its second) and
    # the long ones'.
    assert set(result["request_logs"]) == {"ok"} and result["request_logs"]["ok"] > 2 * 12 + 4


def test_cache_bench_smoke_run_prints_each_runs_share_beside_a_perfect_pins(tmp_path, capsys):
    import cache_bench
    out = tmp_path / "cache_bench.json"
    assert cache_bench.main(["--conversations", "6", "--turns", "3", "--rates", "0,20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cache hit" in printed and "perfect" in printed and str(out) in printed
    results = json.loads(out.read_text())["results"]
    assert [(r["limit_rate_pct"], r["prompt_cache_key"]) for r in results] == [
        (0, True), (0, False), (20, True), (20, False)]
    for r in results:
        assert r["served"] + r["failed_turns"] == r["turns"] == 18
        assert r["logs_agree"], r  # the request logs hold the tokens the answers reported
        assert 0 < r["perfect_pct"] <= 100 and 0 <= r["share_pct"] <= 100 and r["input_tokens"] > 0
    # No limits and a key sent: every conversation stays on its first account, the share is the perfect one.
    assert results[0]["moved_turns"] == 0 and results[0]["ratio"] == 1.0


def test_prune_bench_smoke_run_prunes_every_old_log_under_load_and_keeps_the_totals(tmp_path, capsys):
    import prune_bench
    out = tmp_path / "prune_bench.json"
    assert prune_bench.main(["--logs", "3000", "--seconds", "1", "--streams", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "longest write transaction ms" in printed and "first byte p99 ms" in printed
    r = json.loads(out.read_text())["results"]
    assert r["removed"] == r["old_logs_before"] == 3000 and r["old_logs_left"] == 0
    assert r["rollups_kept"] and r["stored_meanwhile"] > 0  # the rollups grew by what was stored, lost nothing
    assert r["without_ingest_errors"] == r["with_ingest_errors"] == 0
    assert r["without_stream_errors"] == r["with_stream_errors"] == 0
    assert r["without_streams"] > 0 and r["prune_batches"] >= 1 and r["longest_write_ms"] >= 0
