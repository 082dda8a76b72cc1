"""lb.demo: the demo-data command, accounts in mixed statuses and logs over 35 days, via ingest.

A second run is refused while demo data is loaded and adds nothing; --reset
removes the earlier demo accounts and their logs (nothing else) and loads fresh
ones, with the usage summaries rebuilt; negative counts are refused.
"""
import math
from datetime import datetime, timezone
from fractions import Fraction

import pytest
from peewee import fn

from helpers.http import BEARER, create_account, ingest, overview
from lb.tables import SEED_CATALOG, Account, RequestLog, db

# USD per million tokens (input, cached input, output): micro-USD per token.
PRICES = {model: tuple(Fraction(price) for price in prices) for model, _, *prices in SEED_CATALOG}


def priced(log):
    """The log's cost in micro-USD, worked out here: rounded half up, fresh input at the input price."""
    p_in, p_cached, p_out = PRICES[log.model]
    exact = (log.input_tokens - log.cached_input_tokens) * p_in + log.cached_input_tokens * p_cached \
        + log.output_tokens * p_out
    return math.floor(exact + Fraction(1, 2))


def test_demo_data_fills_a_living_overview(app, client, clock):
    result = app.test_cli_runner().invoke(args=["demo-data", "--accounts", "6", "--logs", "2500", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "created 6 accounts and 2500 request logs" in result.output

    overview = client.get("/api/dashboard/overview").get_json()
    counts = overview["accountCounts"]
    assert counts["total"] == 6
    assert sum(1 for key, n in counts.items() if key != "total" and n) >= 3  # mixed statuses
    assert 0 < overview["requestCount"] < 2500  # only the last day of 35
    assert overview["usageSummary"]["totalCost"] > 0

    since = datetime.fromtimestamp(clock() - 36 * 86400, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    usage = client.get(f"/api/usage?since={since}&until=2026-11-26T00:00:00Z").get_json()
    totals = usage["totals"]
    assert totals["requests"] == 2500
    assert 0.01 < totals["errors"] / totals["requests"] < 0.06  # about 3% fail
    assert len({row["key"] for row in client.get("/api/usage?groupBy=model&since=" + since).get_json()["rows"]}) >= 5


def test_demo_logs_go_through_ingest_and_its_summaries(app):
    app.test_cli_runner().invoke(args=["demo-data", "--accounts", "2", "--logs", "300", "--seed", "4"])
    with app.app_context(), db.connection_context():
        logs = list(RequestLog.select())
        hourly = db.execute_sql("SELECT SUM(requests) FROM hourly_usage").fetchone()[0]
    assert len(logs) == hourly == 300
    assert [log.cost for log in logs] == [priced(log) for log in logs]  # every demo model is in the catalog
    assert any(log.cost for log in logs)


DEMO = ["demo-data", "--accounts", "2", "--logs", "50", "--seed", "1"]
SINCE = "2026-10-20T00:00:00Z"  # before the 35 days of demo logs
PERIOD_START_MS = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def stored(app):
    """(account ids, number of request logs) as stored."""
    with app.app_context(), db.connection_context():
        return {a.id for a in Account.select(Account.id)}, RequestLog.select().count()


def log_sums(app, since_ms=0):
    """(requests, input tokens, output tokens) of the stored logs from ``since_ms`` on, summed here."""
    with app.app_context(), db.connection_context():
        row = (RequestLog.select(fn.COUNT(RequestLog.id), fn.SUM(RequestLog.input_tokens),
                                 fn.SUM(RequestLog.output_tokens))
               .where(RequestLog.requested_at >= since_ms).tuples().get())
    return tuple(int(value or 0) for value in row)


def test_a_second_run_is_refused_and_adds_nothing(app):
    first = run(app, *DEMO)
    assert first.exit_code == 0, first.output
    before = stored(app)
    assert (len(before[0]), before[1]) == (2, 50)
    second = run(app, *DEMO)
    assert second.exit_code != 0
    assert "already loaded" in second.output
    assert stored(app) == before


def test_reset_replaces_the_demo_data_and_rebuilds_the_summaries(app, client):
    assert run(app, *DEMO).exit_code == 0
    old_ids, _ = stored(app)
    mine = create_account(client, "ann@example.com")["id"]  # not demo data: it stays
    assert ingest(client, [{"model": "o3-pro", "accountId": mine, "inputTokens": 7, "outputTokens": 3}],
                  headers=BEARER) == {"accepted": 1, "duplicates": 0}

    result = run(app, *DEMO, "--reset")
    assert result.exit_code == 0, result.output
    assert "removed 2 demo accounts and 50 of their request logs" in result.output
    assert "created 2 accounts and 50 request logs" in result.output
    ids, logs = stored(app)
    assert mine in ids and len(ids) == 3 and not ids & old_ids
    assert logs == 51

    requests, input_tokens, output_tokens = log_sums(app)
    assert requests == 51
    usage = client.get(f"/api/usage?since={SINCE}&until=2026-11-26T00:00:00Z")
    assert usage.status_code == 200
    totals = usage.get_json()["totals"]
    assert (totals["requests"], totals["inputTokens"], totals["outputTokens"]) == (
        requests, input_tokens, output_tokens)
    summary = overview(client)["usageSummary"]
    _, period_input, period_output = log_sums(app, PERIOD_START_MS)
    assert (summary["inputTokens"], summary["outputTokens"]) == (period_input, period_output)


@pytest.mark.parametrize("option, value", [("--logs", "-5"), ("--accounts", "-1")])
def test_negative_counts_are_refused(app, option, value):
    args = {"--accounts": "2", "--logs": "50", option: value}
    result = run(app, "demo-data", *[part for pair in args.items() for part in pair])
    assert result.exit_code != 0
    assert option in result.output
    assert stored(app) == (set(), 0)
