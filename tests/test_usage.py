"""lb.usage: GET /api/usage, figures by day, model, account or API key over a range (contract section 6)."""
from datetime import date, timedelta

import pytest

from helpers.http import AUTH_REQUIRED, REMOTE, create_account, error, ingest, message, names_field, ok, overview, post

USAGE = "/api/usage"
FIGURES = ("requests", "errors", "inputTokens", "outputTokens", "cachedInputTokens", "totalTokens", "cost")


def usage(client, query=""):
    return ok(client.get(f"{USAGE}?{query}"))


def figures(requests=0, errors=0, input_tokens=0, output_tokens=0, cached=0, cost=0, share=0):
    """A row's figures; ``share`` (cachedInputShare) is given by hand, never computed here."""
    return {"requests": requests, "errors": errors, "inputTokens": input_tokens, "outputTokens": output_tokens,
            "cachedInputTokens": cached, "totalTokens": input_tokens + output_tokens, "cost": cost,
            "cachedInputShare": share}


def days(first, count):
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(count)]


def test_the_default_is_the_billing_period_by_day(authed):
    body = usage(authed)
    assert set(body) == {"since", "until", "groupBy", "rows", "totals"}
    assert (body["since"], body["until"], body["groupBy"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "day")
    assert body["rows"] == [{"key": key, **figures()} for key in days("2026-11-01", 30)]
    assert body["totals"] == figures()


@pytest.mark.parametrize("cycle_day, since, until, count", [
    (15, "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z", 30),
    (25, "2026-11-25T00:00:00Z", "2026-12-25T00:00:00Z", 30),
    (28, "2026-10-28T00:00:00Z", "2026-11-28T00:00:00Z", 31),
])
def test_the_billing_cycle_day_moves_the_default_range(make_app, cycle_day, since, until, count):
    client = make_app(BILLING_CYCLE_DAY=cycle_day).test_client()
    body = usage(client)
    assert (body["since"], body["until"], body["groupBy"]) == (since, until, "day")
    assert [row["key"] for row in body["rows"]] == days(since[:10], count)
    summary = overview(client)["usageSummary"]
    assert (summary["periodStart"], summary["periodEnd"]) == (since, until)


def test_day_rows_are_utc_days_with_zeros_between(authed):
    ingest(authed, [
        {"model": "gpt-4o-mini", "requestedAt": "2026-11-01T00:00:00Z", "inputTokens": 1000, "outputTokens": 500},
        {"model": "o3-pro", "requestedAt": "2026-11-24T23:59:59.999Z", "status": "error", "inputTokens": 100},
        {"model": "o3-pro", "requestedAt": "2026-11-25T01:00:00+02:00", "status": "rate_limit"},
        {"model": "o3-pro", "requestedAt": "2026-11-25T00:00:00Z", "status": "cancelled", "outputTokens": 10},
        {"model": "o3-pro", "requestedAt": "2026-11-25T07:04:00Z", "status": "quota", "inputTokens": 50,
         "cachedInputTokens": 50},
        {"model": "o3-pro", "requestedAt": "2026-10-31T23:59:59.999Z", "inputTokens": 7},  # before the period
    ])
    body = usage(authed)
    busy = {
        "2026-11-01": figures(1, 0, 1000, 500, 0, 0.0005),  # 150 + 300 micro-USD
        "2026-11-24": figures(2, 2, 100, 0, 0, 0.002),
        "2026-11-25": figures(2, 1, 50, 10, 50, 0.0018, share=100),
    }
    assert body["rows"] == [{"key": key, **busy.get(key, figures())} for key in days("2026-11-01", 30)]
    assert body["totals"] == figures(5, 3, 1150, 510, 50, 0.0043, share=4.35)  # 4.3478...


def test_rows_by_model_are_sorted_by_key(authed):
    ingest(authed, [{"model": m, "inputTokens": 1000, "status": s} for m, s in
                    [("o3-pro", "ok"), ("gpt-4o-mini", "error"), ("local-llama", "ok"), ("o3-pro", "quota"),
                     ("gpt-4o-mini", "cancelled"), ("Zeta", "rate_limit")]])
    body = usage(authed, "groupBy=model")
    assert body["groupBy"] == "model"
    assert body["rows"] == [
        {"key": "Zeta", **figures(1, 1, 1000)},
        {"key": "gpt-4o-mini", **figures(2, 1, 2000, cost=0.0003)},
        {"key": "local-llama", **figures(1, 0, 1000)},
        {"key": "o3-pro", **figures(2, 1, 2000, cost=0.04)},
    ]
    assert body["totals"] == figures(6, 3, 6000, cost=0.0403)


def test_rows_by_account_put_logs_without_one_under_null(authed):
    ann, bob = create_account(authed, "ann@example.com")["id"], create_account(authed, "bob@example.com")["id"]
    ingest(authed, [{"model": "o3-pro", "accountId": bob, "outputTokens": 10},
                    {"model": "o3-pro", "outputTokens": 1}, {"model": "o3-pro", "accountId": ann, "status": "error"},
                    {"model": "o3-pro", "accountId": bob, "status": "cancelled", "outputTokens": 5}])
    rows = usage(authed, "groupBy=account")["rows"]
    assert rows == sorted([{"key": ann, **figures(1, 1)},
                           {"key": bob, **figures(2, 0, 0, 15, cost=0.0012)}], key=lambda r: r["key"]) + [
        {"key": None, **figures(1, 0, 0, 1, cost=0.0001)}]  # the code puts null after every id


def test_a_deleted_accounts_usage_stays(authed):
    ann = create_account(authed, "ann@example.com")["id"]
    ingest(authed, [{"model": "o3-pro", "accountId": ann, "inputTokens": 100}])
    before = usage(authed, "groupBy=account")
    assert authed.delete(f"/api/accounts/{ann}").status_code == 204
    assert usage(authed, "groupBy=account") == before
    assert before["rows"] == [{"key": ann, **figures(1, 0, 100, cost=0.002)}]


@pytest.mark.parametrize("group_by", ["day", "model", "account"])
def test_totals_equal_the_overview_summary(authed, group_by):
    ann = create_account(authed, "ann@example.com")["id"]
    ingest(authed, [{"model": "gpt-4o-mini", "inputTokens": 1000, "requestedAt": f"2026-11-{d:02d}T06:00:00Z",
                     "cachedInputTokens": d * 10, "outputTokens": d, "accountId": ann if d % 2 else None,
                     "status": ("ok", "error", "cancelled")[d % 3]} for d in range(1, 26)]
           + [{"model": "o3-pro", "inputTokens": 999, "requestedAt": "2026-10-31T12:00:00Z"}])
    totals = usage(authed, f"groupBy={group_by}")["totals"]
    summary = overview(authed)["usageSummary"]
    for name in ("inputTokens", "outputTokens", "cachedInputTokens", "totalTokens"):
        assert totals[name] == summary[name], name
    assert totals["cost"] == summary["totalCost"]
    assert (totals["requests"], totals["inputTokens"]) == (25, 25_000)
    rows = usage(authed, f"groupBy={group_by}")["rows"]
    for name in FIGURES[:-1]:
        assert sum(row[name] for row in rows) == totals[name], name


@pytest.fixture
def hourly(authed):
    """Logs around whole hours, so ranges cut hours at both edges."""
    stamps = ["10:30:00", "11:00:00", "11:59:59.999", "12:00:00", "13:15:00", "23:59:59.999"]
    ingest(authed, [{"model": "o3-pro", "requestId": s, "requestedAt": f"2026-11-12T{s}Z", "inputTokens": 2 ** i}
                    for i, s in enumerate(stamps)])


@pytest.mark.parametrize("since, until, input_tokens", [
    ("10:30:00", "12:00:00", 1 + 2 + 4),  # since inclusive, until exclusive
    ("10:30:00.001", "13:15:00", 2 + 4 + 8),
    ("10:30:00", "13:15:00.001", 1 + 2 + 4 + 8 + 16),
    ("11:00:00", "12:00:00", 2 + 4),
    ("11:00:00", "11:00:00.001", 2),
    ("11:00:00.001", "11:59:59.999", 0),
    ("11:59:59.999", "12:00:00.001", 4 + 8),
    ("00:00:00", "23:59:59.999", 1 + 2 + 4 + 8 + 16),
])
@pytest.mark.parametrize("group_by", ["day", "model"])
def test_since_is_inclusive_and_until_exclusive(authed, hourly, since, until, input_tokens, group_by):
    body = usage(authed, f"since=2026-11-12T{since}Z&until=2026-11-12T{until}Z&groupBy={group_by}")
    assert body["totals"]["inputTokens"] == input_tokens
    assert body["totals"]["requests"] == bin(input_tokens).count("1")
    if group_by == "day":
        assert [row["key"] for row in body["rows"]] == ["2026-11-12"]
        assert body["rows"][0]["inputTokens"] == input_tokens


@pytest.mark.parametrize("query, keys", [
    ("since=2026-11-10T00:00:00Z&until=2026-11-15T00:00:00Z", days("2026-11-10", 5)),
    ("since=2026-11-10T23:59:59.999Z&until=2026-11-15T00:00:00.001Z", days("2026-11-10", 6)),
    ("since=2026-11-10T12:00:00+00:00&until=2026-11-11T12:00:00+00:00", ["2026-11-10", "2026-11-11"]),
    ("since=2026-11-10T01:00:00%2B02:00&until=2026-11-10T02:00:00%2B02:00", ["2026-11-09"]),
    ("since=2025-01-01T00:00:00Z&until=2026-01-02T00:00:00Z", days("2025-01-01", 366)),  # 366 days is allowed
    ("since=2026-11-20T00:00:00Z", days("2026-11-20", 11)),  # until defaults to the period's end
    ("until=2026-11-03T00:00:00Z", days("2026-11-01", 2)),  # since defaults to the period's start
])
def test_every_day_of_the_range_has_a_row(authed, query, keys):
    body = usage(authed, query)
    assert [row["key"] for row in body["rows"]] == keys
    assert all(row == {"key": row["key"], **figures()} for row in body["rows"])


@pytest.mark.parametrize("query, field", [
    ("groupBy=week", "groupBy"), ("groupBy=", "groupBy"), ("groupBy=DAY", "groupBy"), ("groupBy=Model", "groupBy"),
    ("groupBy=accountId", "groupBy"), ("groupBy=day,model", "groupBy"),
    ("since=2025-01-01T00:00:00Z&until=2026-01-02T00:00:00.001Z", "until"),  # just over 366 days
    ("since=2020-01-01T00:00:00Z", "until"),  # until defaults to the period's end: years away
    ("since=2026-11-10T00:00:00Z&until=2026-11-10T00:00:00Z", "until"),
    ("since=2026-11-10T00:00:00Z&until=2026-11-09T00:00:00Z", "until"),
    ("until=2026-10-01T00:00:00Z", "until"),  # before the default since
    ("since=yesterday", "since"), ("since=", "since"), ("since=2026-11-10T00:00:00", "since"),
    ("until=2026-11-10", "until"), ("until=2026-11-31T00:00:00Z", "until"), ("until=" + "1" * 100, "until"),
    ("since=9999-12-31T20:00:00-05:00&until=9999-12-31T23:59:59-05:00", "since"),  # beyond year 9999 in UTC
    ("since=0001-01-01T00:00:00%2B01:00&until=0001-01-02T00:00:00Z", "since"),  # before year 1 in UTC
])
def test_bad_queries_are_422(authed, query, field):
    response = authed.get(f"{USAGE}?{query}")
    assert names_field(response, field)


@pytest.mark.parametrize("query", ["", "groupBy=model", "groupBy=bogus", "since=2026-11-01T00:00:00Z"])
def test_usage_needs_a_session(app, authed, query):
    response = app.test_client().get(f"{USAGE}?{query}")
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


@pytest.mark.parametrize("query", ["", "groupBy=account"])
def test_remote_clients_are_refused_before_a_password_is_set(client, query):
    response = client.get(f"{USAGE}?{query}", environ_base=REMOTE)
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


def test_the_last_day_of_year_9999_is_in_range(authed):
    body = usage(authed, "since=9999-12-31T00:00:00Z&until=9999-12-31T23:59:59.999Z")
    assert [row["key"] for row in body["rows"]] == ["9999-12-31"]
    assert body["totals"] == figures()


# -- by API key ---------------------------------------------------------------------------

def create_key(client, name):
    response = post(client, "/api/api-keys", {"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_rows_by_api_key_are_sorted_by_key_with_null_last(authed):
    ids = [create_key(authed, name) for name in ("laptop", "ci", "desktop")]
    first, second, third = sorted(ids)
    ingest(authed, [
        {"model": "o3-pro", "apiKeyId": third, "inputTokens": 1000},
        {"model": "o3-pro", "inputTokens": 10, "status": "error"},
        {"model": "gpt-4o-mini", "apiKeyId": first, "outputTokens": 1000, "status": "cancelled"},
        {"model": "o3-pro", "apiKeyId": third, "outputTokens": 10, "status": "quota"},
        {"model": "o3-pro", "apiKeyId": first, "inputTokens": 100, "cachedInputTokens": 100,
         "requestedAt": "2026-11-02T00:00:00Z"},
    ])
    body = usage(authed, "groupBy=apiKey")
    assert body["groupBy"] == "apiKey"
    assert body["rows"] == [
        {"key": first, **figures(2, 0, 100, 1000, 100, cost=0.0026, share=100)},  # 0.0006 + 0.002
        {"key": third, **figures(2, 1, 1000, 10, cost=0.0208)},
        {"key": None, **figures(1, 1, 10, cost=0.0002)},
    ]  # a key without logs has no row
    assert body["totals"] == figures(5, 2, 1110, 1010, 100, cost=0.0236, share=9.01)  # 9.009...
    assert second not in [row["key"] for row in body["rows"]]


def test_logs_without_a_key_are_one_null_row(authed):
    ann = create_account(authed, "ann@example.com")["id"]
    ingest(authed, [{"model": "o3-pro", "inputTokens": 1},
                    {"model": "gpt-4o-mini", "accountId": ann, "inputTokens": 2}])
    assert usage(authed, "groupBy=apiKey")["rows"] == [{"key": None, **figures(2, 0, 3, cost=0)}]


def test_a_deleted_keys_usage_stays_under_its_id(authed):
    key = create_key(authed, "doomed")
    ingest(authed, [{"model": "o3-pro", "apiKeyId": key, "inputTokens": 100}])
    before = usage(authed, "groupBy=apiKey")
    assert authed.delete(f"/api/api-keys/{key}").status_code == 204
    assert usage(authed, "groupBy=apiKey") == before
    assert before["rows"] == [{"key": key, **figures(1, 0, 100, cost=0.002)}]


@pytest.mark.parametrize("since, until, input_tokens", [
    ("10:30:00", "12:00:00", 1 + 2 + 4),
    ("10:30:00.001", "13:15:00", 2 + 4 + 8),
    ("11:00:00", "11:00:00.001", 2),
    ("00:00:00", "23:59:59.999", 1 + 2 + 4 + 8 + 16),
])
def test_rows_by_api_key_cut_hours_at_both_edges(authed, since, until, input_tokens):
    key = create_key(authed, "edges")
    stamps = ["10:30:00", "11:00:00", "11:59:59.999", "12:00:00", "13:15:00", "23:59:59.999"]
    ingest(authed, [{"model": "o3-pro", "requestedAt": f"2026-11-12T{s}Z", "inputTokens": 2 ** i,
                     "apiKeyId": key if i % 2 else None} for i, s in enumerate(stamps)])
    body = usage(authed, f"since=2026-11-12T{since}Z&until=2026-11-12T{until}Z&groupBy=apiKey")
    by_key = {row["key"]: row["inputTokens"] for row in body["rows"]}
    assert sum(by_key.values()) == body["totals"]["inputTokens"] == input_tokens
    odd = sum(2 ** i for i in range(1, 6, 2) if input_tokens & 2 ** i)
    assert by_key.get(key, 0) == odd
    assert by_key.get(None, 0) == input_tokens - odd


def test_totals_are_the_same_in_every_grouping(authed):
    ann = create_account(authed, "ann@example.com")["id"]
    keys = [create_key(authed, "a"), create_key(authed, "b")]
    ingest(authed, [{"model": ("gpt-4o-mini", "o3-pro", "local")[d % 3], "inputTokens": 1000 + d,
                     "requestedAt": f"2026-11-{d:02d}T{d % 24:02d}:{d:02d}:00Z", "cachedInputTokens": d * 10,
                     "outputTokens": d, "accountId": ann if d % 2 else None,
                     "apiKeyId": (keys[0], keys[1], None, keys[0])[d % 4],
                     "status": ("ok", "error", "cancelled", "quota")[d % 4]} for d in range(1, 26)]
           + [{"model": "o3-pro", "inputTokens": 999, "requestedAt": "2026-10-31T12:00:00Z", "apiKeyId": keys[0]}])
    answers = {group: usage(authed, f"groupBy={group}") for group in ("day", "model", "account", "apiKey")}
    totals = answers["apiKey"]["totals"]
    assert (totals["requests"], totals["inputTokens"]) == (25, 25_000 + 325)
    for group, body in answers.items():
        assert body["totals"] == totals, group
        for name in FIGURES[:-1]:
            assert sum(row[name] for row in body["rows"]) == totals[name], (group, name)
    summary = overview(authed)["usageSummary"]
    assert (totals["inputTokens"], totals["outputTokens"], totals["cost"]) == (
        summary["inputTokens"], summary["outputTokens"], summary["totalCost"])
    assert [row["key"] for row in answers["apiKey"]["rows"]] == sorted(keys) + [None]


@pytest.mark.parametrize("group_by", ["apikey", "api_key", "apiKeyId", "ApiKey", "key"])
def test_other_spellings_of_api_key_are_422(authed, group_by):
    response = authed.get(f"{USAGE}?groupBy={group_by}")
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("groupBy ")


def test_usage_by_api_key_needs_a_session(app, authed):
    response = app.test_client().get(f"{USAGE}?groupBy=apiKey")
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED
    response = app.test_client().get(f"{USAGE}?groupBy=apiKey", environ_base=REMOTE)
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


# -- the cached input share of each row (contract section 17) ---------------------------------------------

def test_each_row_has_its_own_cached_input_share(authed):
    ingest(authed, [{"model": m, "inputTokens": n, "cachedInputTokens": c} for m, n, c in [
        ("a-most", 800, 700),  # 87.5
        ("b-third", 3, 1),  # 33.33
        ("c-half-up", 800, 1),  # 0.125: half rounds up to 0.13 (a float's round gives 0.12)
        ("d-half-up", 20_000, 2009),  # 10.045: 10.05 (a float's round gives 10.04)
        ("e-none", 0, 0), ("e-none", 0, 0),  # requests without input: 0, no division by zero
        ("f-sums", 100, 100), ("f-sums", 900, 0),  # the row's sums: 10, not the mean of the logs' shares
        ("g-all", 7, 7),
    ]])
    body = usage(authed, "groupBy=model")
    assert {row["key"]: row["cachedInputShare"] for row in body["rows"]} == {
        "a-most": 87.5, "b-third": 33.33, "c-half-up": 0.13, "d-half-up": 10.05, "e-none": 0, "f-sums": 10,
        "g-all": 100}
    assert body["rows"][4] == {"key": "e-none", **figures(2)}
    # The totals' share is of the totals: 2818 cached of 22610 input, 12.4635...
    assert (body["totals"]["inputTokens"], body["totals"]["cachedInputTokens"]) == (22_610, 2818)
    assert body["totals"]["cachedInputShare"] == 12.46


def test_day_rows_share_is_of_that_day_and_a_float(authed):
    ingest(authed, [
        {"model": "o3-pro", "requestedAt": "2026-11-10T23:30:00Z", "inputTokens": 4, "cachedInputTokens": 1},
        {"model": "o3-pro", "requestedAt": "2026-11-11T00:30:00Z", "inputTokens": 6, "cachedInputTokens": 6},
    ])
    response = authed.get(f"{USAGE}?since=2026-11-10T00:00:00Z&until=2026-11-13T00:00:00Z")
    rows = response.get_json()["rows"]
    assert [(row["key"], row["cachedInputShare"]) for row in rows] == [
        ("2026-11-10", 25), ("2026-11-11", 100), ("2026-11-12", 0)]
    assert all(type(row["cachedInputShare"]) is float for row in rows)
    assert b'"cachedInputShare":0.0' in response.data and b'"cachedInputShare":25.0' in response.data
    assert response.get_json()["totals"]["cachedInputShare"] == 70


@pytest.mark.parametrize("since, until, share", [
    ("10:30:00", "11:30:00", 25),  # the partial hour at each edge, from the raw logs: 1 of 4
    ("10:00:00", "13:00:00", 40),  # whole hours only, from the summary: 1 + 3 of 4 + 6
    ("11:00:00", "12:00:00", 0),  # a whole hour without logs
    ("11:45:00", "12:15:00", 50),  # 3 of 6, inside one hour
])
def test_the_share_is_exact_where_ranges_cut_hours(authed, since, until, share):
    ingest(authed, [{"model": "o3-pro", "requestedAt": f"2026-11-12T{t}Z", "inputTokens": n, "cachedInputTokens": c}
                    for t, n, c in [("10:30:00", 4, 1), ("12:00:00", 6, 3)]])
    for group_by in ("day", "model"):
        body = usage(authed, f"since=2026-11-12T{since}Z&until=2026-11-12T{until}Z&groupBy={group_by}")
        assert body["totals"]["cachedInputShare"] == share, group_by
        if body["rows"]:
            assert body["rows"][0]["cachedInputShare"] == share, group_by
