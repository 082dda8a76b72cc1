"""lb.demo: the demo-data command, accounts in mixed statuses and logs over 35 days, via ingest."""
import math
from datetime import datetime, timezone
from fractions import Fraction

from lb.store import SEED_CATALOG, RequestLog, db

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
