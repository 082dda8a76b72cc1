"""bench/soak.py and bench/crash.py, the short runs CI makes: the whole service under mixed load (streaming
clients through the proxy, ingest writers, dashboard readers) for 10 s, then killed with SIGKILL mid-load and
restarted, 10 times. On this pass's database: SQLite in a fresh data directory, or a fresh database on the
PostgreSQL server of the PostgreSQL pass.

Speed is printed, never asserted; what is asserted is what a user relies on under
load: no 5xx, no "database is locked", every acknowledged requestId stored exactly
once, every client stream logged once with its status, the accounts' statuses those
the upstream gave, the overview and usage equal to a raw recount, a WAL that stays
bounded; and after each crash, nothing acknowledged lost, nothing stored twice or in part.
"""
import json
import os
import sys

from helpers.data import POSTGRES_URL

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import crash  # noqa: E402
import soak  # noqa: E402


ON_THIS_DATABASE = ["--postgres", POSTGRES_URL] if POSTGRES_URL else []


def test_ten_seconds_of_mixed_load_lose_nothing(tmp_path, capsys):
    out = tmp_path / "soak.json"
    figures = soak.main(["--seconds", "10", "--checkpoint-seconds", "2", "--out", str(out), *ON_THIS_DATABASE])
    assert figures["database"] == ("PostgreSQL" if POSTGRES_URL else "SQLite")
    assert json.loads(out.read_text()) == figures
    # The dashboard's share: writers and readers.
    assert figures["batches"] > 0 and figures["requests"] > figures["batches"]
    assert figures["http_5xx"] == figures["other_errors"] == figures["broken"] == figures["database_locked"] == 0
    assert figures["lost_ids"] == figures["doubled_ids"] == 0
    assert figures["overview_equals_recount"] and figures["usage_equals_recount"]
    if not POSTGRES_URL:
        assert figures["wal_mb"] < 4 * max(figures["db_mb"], 4)
    # The proxy's share: every stream completed or hung up, each logged once as such, none on the limited
    # account, which the pool met (each time failing over) and left rate_limited.
    assert figures["streams_completed"] > 0 and figures["streams_cancelled"] > 0
    assert figures["proxied_other"] == {} and figures["server_5xx"] == 0
    assert figures["upstream_streams"] == figures["streams_completed"] + figures["streams_cancelled"]
    assert figures["upstream_429"] > 0 and figures["failovers"] == figures["upstream_429"]
    assert figures["logs_lost"] == figures["logs_doubled"] == figures["logs_stray"] == 0
    assert figures["logs_wrong_status"] == figures["ok_served_by_limited"] == 0
    assert figures["accounts_as_dictated"]
    printed = capsys.readouterr().out
    assert "overview_p50_ms" in printed and "added_ttfb_p50_ms" in printed and "rss_mb" in printed


def test_ten_seconds_through_two_workers_lose_nothing(tmp_path):
    """The same load on a server of two worker processes sharing the database: no database-is-locked reaches a
    client, no log is lost or doubled. (/metrics is one worker's, so the failover count is not checked.)"""
    figures = soak.main(["--seconds", "10", "--workers", "2", "--out", str(tmp_path / "soak.json"),
                         *ON_THIS_DATABASE])
    assert figures["workers"] == 2 and figures["batches"] > 0
    assert figures["http_5xx"] == figures["other_errors"] == figures["broken"] == figures["database_locked"] == 0
    assert figures["lost_ids"] == figures["doubled_ids"] == 0
    assert figures["overview_equals_recount"] and figures["usage_equals_recount"]
    assert figures["streams_completed"] > 0 and figures["streams_cancelled"] > 0
    assert figures["proxied_other"] == {} and figures["http_5xx_proxied"] == 0
    assert figures["upstream_streams"] == figures["streams_completed"] + figures["streams_cancelled"]
    assert figures["logs_lost"] == figures["logs_doubled"] == figures["logs_stray"] == 0
    assert figures["logs_wrong_status"] == figures["ok_served_by_limited"] == 0
    assert figures["accounts_as_dictated"] and figures["failovers"] is None


def test_ten_crashes_under_mixed_load_lose_nothing_acknowledged(tmp_path, capsys):
    out = tmp_path / "crash.json"
    figures = crash.main(["--cycles", "10", "--seconds", "2.5", "--out", str(out), *ON_THIS_DATABASE])
    assert json.loads(out.read_text()) == figures
    # The kills came mid-load: streams and batches were cut off, and the clients saw it.
    assert figures["proxied_outcomes"]["broken"] > 0 and figures["proxied_outcomes"]["ok"] > 0
    assert figures["batches_acknowledged"] > 0
    assert figures["dashboard_5xx"] == figures["proxied_5xx"] == 0
    assert figures["integrity_ok"] is (None if POSTGRES_URL else True)  # PostgreSQL's server outlives the kill
    assert figures["acked_batches_lost"] == figures["batches_in_part"] == 0
    assert figures["logs_lost"] == figures["logs_doubled"] == figures["logs_stray"] == 0
    assert figures["logs_wrong_status"] == figures["ok_served_by_limited"] == 0
    assert figures["accounts_as_dictated"] and figures["summaries_unequal"] == 0
    assert "batches_in_part" in capsys.readouterr().out
