"""lb.store: the init-db command, the stored catalog (seeded once, kept across restarts), and the
upgrade of a database an older version made (new columns filled, the email-only index and the old
rollup table gone, the rollups rebuilt from the raw logs).

The SQL statements themselves are exercised by every endpoint's tests; /healthz's ping is in test_views.py.
"""
import os
import sqlite3
from contextlib import closing

import pytest

from helpers.data import set_catalog
from helpers.http import create_account, error, ingest, ok, post
from lb import alerts, tables


def catalog_ids(app):
    with app.app_context(), tables.db.connection_context():
        return [m.id for m in tables.CatalogModel.select().order_by(tables.CatalogModel.position)]


def test_init_db_is_idempotent_and_keeps_data(app, authed):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "schema ready" in result.output
    assert catalog_ids(app) == [m[0] for m in tables.SEED_CATALOG]
    session = authed.get("/api/dashboard-auth/session")
    assert session.status_code == 200
    assert session.get_json()["isPasswordConfigured"] is True and session.get_json()["authenticated"] is True


def test_the_catalog_survives_a_restart_and_is_seeded_once(make_app):
    first = make_app()
    set_catalog(first, "o3-pro", name="Renamed", enabled=False)
    set_catalog(first, "gpt-4o-mini", name="GPT-4o Mini (custom)")
    second = make_app()
    assert catalog_ids(second) == [m[0] for m in tables.SEED_CATALOG]  # no second copy
    response = second.test_client().get("/api/models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert {"id": "gpt-4o-mini", "name": "GPT-4o Mini (custom)"} in models
    assert "o3-pro" not in [m["id"] for m in models]
    assert len(models) == len(tables.SEED_CATALOG) - 1


# -- upgrading an older database ------------------------------------------------------------

# The schema of 47bdc13 (before keys, credentials and workspaces), as its create_tables wrote it on SQLite.
OLD_SCHEMA = """
CREATE TABLE "account" ("id" VARCHAR(40) NOT NULL PRIMARY KEY, "email" VARCHAR(254) NOT NULL,
  "email_key" VARCHAR(254) NOT NULL, "plan_type" VARCHAR(64), "status" VARCHAR(16) NOT NULL, "status_reason" TEXT,
  "created_at" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL);
CREATE UNIQUE INDEX "account_email_key" ON "account" ("email_key");
CREATE TABLE "auth_failure" ("id" INTEGER NOT NULL PRIMARY KEY, "client" VARCHAR(64) NOT NULL, "at" INTEGER NOT NULL);
CREATE INDEX "auth_failure_client_at" ON "auth_failure" ("client", "at");
CREATE TABLE "catalog_model" ("id" VARCHAR(128) NOT NULL PRIMARY KEY, "name" VARCHAR(200) NOT NULL,
  "position" INTEGER NOT NULL, "enabled" INTEGER NOT NULL, "input_price" DECIMAL(14, 6) NOT NULL,
  "cached_input_price" DECIMAL(14, 6) NOT NULL, "output_price" DECIMAL(14, 6) NOT NULL);
CREATE TABLE "dashboard_session" ("token_hash" VARCHAR(64) NOT NULL PRIMARY KEY, "created_at" INTEGER NOT NULL,
  "expires_at" INTEGER NOT NULL, "password_verified" INTEGER NOT NULL, "totp_verified" INTEGER NOT NULL);
CREATE TABLE "dashboard_settings" ("id" INTEGER NOT NULL PRIMARY KEY, "password_hash" VARCHAR(512),
  "totp_secret" VARCHAR(64), "totp_last_step" INTEGER NOT NULL);
CREATE TABLE "hourly_key_usage" ("requests" INTEGER NOT NULL, "failures" INTEGER NOT NULL,
  "cancelled" INTEGER NOT NULL, "input_tokens" INTEGER NOT NULL, "output_tokens" INTEGER NOT NULL,
  "cached_input_tokens" INTEGER NOT NULL, "cost" INTEGER NOT NULL, "hour" INTEGER NOT NULL,
  "account_id" VARCHAR(40) NOT NULL, "model" VARCHAR(128) NOT NULL, PRIMARY KEY ("hour", "account_id", "model"));
CREATE TABLE "hourly_usage" ("hour" INTEGER NOT NULL PRIMARY KEY, "requests" INTEGER NOT NULL,
  "failures" INTEGER NOT NULL, "cancelled" INTEGER NOT NULL, "input_tokens" INTEGER NOT NULL,
  "output_tokens" INTEGER NOT NULL, "cached_input_tokens" INTEGER NOT NULL, "cost" INTEGER NOT NULL);
CREATE TABLE "request_log" ("id" INTEGER NOT NULL PRIMARY KEY, "request_id" VARCHAR(200),
  "requested_at" INTEGER NOT NULL, "account_id" VARCHAR(40), "model" VARCHAR(128) NOT NULL,
  "input_tokens" INTEGER NOT NULL, "output_tokens" INTEGER NOT NULL, "cached_input_tokens" INTEGER NOT NULL,
  "status" VARCHAR(16) NOT NULL, "error_code" VARCHAR(200), "latency_ms" INTEGER, "cost" INTEGER NOT NULL);
CREATE UNIQUE INDEX "request_log_request_id" ON "request_log" ("request_id");
CREATE INDEX "request_log_requested_at_id_status" ON "request_log" ("requested_at", "id", "status");
CREATE INDEX "request_log_account_id_requested_at_id" ON "request_log" ("account_id", "requested_at", "id");
CREATE INDEX "request_log_model_requested_at_id" ON "request_log" ("model", "requested_at", "id");
CREATE TABLE "totp_setup" ("token_hash" VARCHAR(64) NOT NULL PRIMARY KEY, "session_hash" VARCHAR(64) NOT NULL,
  "secret" VARCHAR(64) NOT NULL, "expires_at" INTEGER NOT NULL);
"""

HOUR_MS = 3_600_000
T0 = 1_795_132_800_000  # 2026-11-20T00:00:00Z
OLD_ACCOUNT = "acc_old_account1"
# (request_id, requested_at, account_id, model, input, output, cached, status, cost in micro-USD)
OLD_LOGS = [
    ("old-1", T0 + 9 * HOUR_MS, OLD_ACCOUNT, "o3-pro", 1000, 100, 0, "ok", 28_000),
    ("old-2", T0 + 9 * HOUR_MS + 1, OLD_ACCOUNT, "gpt-4o-mini", 2000, 10, 1000, "error", 231),
    ("old-3", T0 + 30 * HOUR_MS + 5, None, "o3-pro", 50, 0, 0, "cancelled", 1_000),
]


def old_database(path):
    """Write the older version's database at ``path``: one account, three logs and their rollups."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.executemany("INSERT INTO catalog_model VALUES (?, ?, ?, 1, ?, ?, ?)",
                         [(mid, name, i, p_in, p_cached, p_out)
                          for i, (mid, name, p_in, p_cached, p_out) in enumerate(tables.SEED_CATALOG)])
        conn.execute("INSERT INTO dashboard_settings VALUES (1, NULL, NULL, 0)")
        conn.execute("INSERT INTO account VALUES (?, 'Ann@Example.com', 'ann@example.com', 'plus', 'paused', "
                     "'manual pause', ?, ?)", (OLD_ACCOUNT, T0, T0 + 1000))
        for request_id, at, account, model, inp, out, cached, status, cost in OLD_LOGS:
            conn.execute("INSERT INTO request_log (request_id, requested_at, account_id, model, input_tokens, "
                         "output_tokens, cached_input_tokens, status, error_code, latency_ms, cost) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 10, ?)",
                         (request_id, at, account, model, inp, out, cached, status, cost))
            failed, cancelled = int(status in tables.FAILED_STATUSES), int(status == "cancelled")
            for table, key in (("hourly_usage", (at // HOUR_MS,)),
                               ("hourly_key_usage", (at // HOUR_MS, account or "", model))):
                columns = "hour" if table == "hourly_usage" else "hour, account_id, model"
                conn.execute(f"INSERT INTO {table} ({columns}, requests, failures, cancelled, input_tokens, "
                             f"output_tokens, cached_input_tokens, cost) VALUES "
                             f"({', '.join('?' * len(key))}, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                             f"requests = requests + 1, failures = failures + excluded.failures, "
                             f"cancelled = cancelled + excluded.cancelled, "
                             f"input_tokens = input_tokens + excluded.input_tokens, "
                             f"output_tokens = output_tokens + excluded.output_tokens, "
                             f"cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, "
                             f"cost = cost + excluded.cost",
                             (*key, failed, cancelled, inp, out, cached, cost))
        conn.commit()


def usage_rows(client, group_by):
    body = ok(client.get(f"/api/usage?groupBy={group_by}"))
    return {row["key"]: (row["requests"], row["errors"], row["inputTokens"], row["outputTokens"],
                         row["cachedInputTokens"]) for row in body["rows"] if row["requests"]}, body["totals"]


@pytest.mark.sqlite_only
def test_an_older_database_is_upgraded_at_start(make_app, tmp_path):
    old_database(str(tmp_path / "data" / "lb.db"))
    app = make_app()
    client = app.test_client()  # no password yet: this machine may use the dashboard

    [account] = ok(client.get("/api/accounts"))["accounts"]
    assert {name: account[name] for name in ("id", "email", "planType", "status", "statusReason", "createdAt",
                                             "updatedAt", "chatgptAccountId")} == {
        "id": OLD_ACCOUNT, "email": "Ann@Example.com", "planType": "plus", "status": "paused",
        "statusReason": "manual pause", "createdAt": "2026-11-20T00:00:00Z", "updatedAt": "2026-11-20T00:00:01Z",
        "chatgptAccountId": None}
    assert ok(client.get(f"/api/accounts/{OLD_ACCOUNT}"))["id"] == OLD_ACCOUNT

    logs = ok(client.get("/api/request-logs"))["requests"]
    assert [(log["requestId"], log["accountId"], log["apiKeyId"], log["inputTokens"], log["status"], log["cost"])
            for log in logs] == [("old-3", None, None, 50, "cancelled", 0.001),
                                 ("old-2", OLD_ACCOUNT, None, 2000, "error", 0.000231),
                                 ("old-1", OLD_ACCOUNT, None, 1000, "ok", 0.028)]

    # The rollups rebuilt from the raw logs: every grouping sums to the logs.
    expected_totals = {"requests": 3, "errors": 1, "inputTokens": 3050, "outputTokens": 110,
                       "cachedInputTokens": 1000, "totalTokens": 3160, "cost": 0.0292,
                       "cachedInputShare": 32.79}  # 1000 of 3050: 32.786...
    by_day, totals = usage_rows(client, "day")
    assert by_day == {"2026-11-20": (2, 1, 3000, 110, 1000), "2026-11-21": (1, 0, 50, 0, 0)}
    assert totals == expected_totals
    assert usage_rows(client, "model") == ({"gpt-4o-mini": (1, 1, 2000, 10, 1000), "o3-pro": (2, 0, 1050, 100, 0)},
                                           expected_totals)
    assert usage_rows(client, "account") == ({OLD_ACCOUNT: (2, 1, 3000, 110, 1000), None: (1, 0, 50, 0, 0)},
                                             expected_totals)
    assert usage_rows(client, "apiKey") == ({None: (3, 1, 3050, 110, 1000)}, expected_totals)
    summary = ok(client.get("/api/dashboard/overview"))["usageSummary"]
    assert (summary["inputTokens"], summary["outputTokens"], summary["totalCost"]) == (3050, 110, 0.0292)
    assert ok(client.get("/api/settings")) == {"apiKeyRequired": False, "stickySessions": True, "webhookUrl": None,
                                               "webhookEvents": list(alerts.EVENTS),
                                               "requestLogRetentionDays": None, "lastPrune": None}

    # Accounts: a second manual one with another email; the same email (any case) is still taken.
    bob = create_account(client, "bob@example.com")
    response = post(client, "/api/accounts", {"email": "ANN@example.com"})
    assert error(response) == (409, "account_exists")
    assert sorted(a["id"] for a in ok(client.get("/api/accounts"))["accounts"]) == sorted([OLD_ACCOUNT, bob["id"]])

    # Keys and logs that name them.
    response = post(client, "/api/api-keys", {"name": "after the upgrade"})
    assert response.status_code == 201
    key = response.get_json()["id"]
    assert ingest(client, [{"model": "o3-pro", "requestId": "new-1", "apiKeyId": key, "accountId": OLD_ACCOUNT,
                            "inputTokens": 10}]) == {"accepted": 1, "duplicates": 0}
    assert [log["requestId"] for log in ok(client.get(f"/api/request-logs?apiKeyId={key}"))["requests"]] == ["new-1"]
    rows, totals = usage_rows(client, "apiKey")
    assert rows == {key: (1, 0, 10, 0, 0), None: (3, 1, 3050, 110, 1000)} and totals["requests"] == 4

    # A second start changes nothing.
    again = make_app().test_client()
    assert usage_rows(again, "apiKey") == (rows, totals)
    assert len(ok(again.get("/api/request-logs"))["requests"]) == 4
    assert len(ok(again.get("/api/accounts"))["accounts"]) == 2
    assert error(post(again, "/api/accounts", {"email": "ann@EXAMPLE.com"})) == (409, "account_exists")


@pytest.mark.sqlite_only
def test_the_upgrade_leaves_the_new_schema(make_app, tmp_path):
    path = str(tmp_path / "data" / "lb.db")
    old_database(path)
    make_app()
    with closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        account = {row[1]: row for row in conn.execute("PRAGMA table_info(account)")}
        log_columns = {row[1] for row in conn.execute("PRAGMA table_info(request_log)")}
        filled = conn.execute("SELECT chatgpt_account_id FROM account").fetchall()
    assert "hourly_key_usage" not in tables and {"hourly_group_usage", "api_key"} <= tables
    assert "account_email_key" not in indexes
    assert "api_key_id" in log_columns and "chatgpt_account_id" in account
    assert filled == [("",)]
