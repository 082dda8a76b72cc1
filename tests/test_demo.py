"""The demo-data command: accounts in mixed statuses and logs over 35 days, via ingest."""
from datetime import datetime, timezone

from lb.store import RequestLog, db


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
        costs = [log.cost for log in RequestLog.select()]
        hourly = db.execute_sql("SELECT SUM(requests) FROM hourly_usage").fetchone()[0]
    assert len(costs) == hourly == 300
    assert all(cost >= 0 for cost in costs) and any(costs)
