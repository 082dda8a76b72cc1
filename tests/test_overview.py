"""lb.overview: GET /api/dashboard/overview, and the billing period it sums.

Accounts counted by status (the deleted left out), usage in the billing period
(tokens, and cost priced from the catalog, rounded to 4 decimals), the period from
the cycle day (start included, end excluded), and the request count and error rate
of the last 24 hours (always a float, 0.0 with nothing to count), and the share of
that window's input tokens read from the prompt cache (contract section 17). The
guard in front of it is in test_auth.py.
"""
from datetime import datetime, timezone

import pytest

from helpers.http import OVERVIEW, create_account, error, ingest, login, overview, setup_password


def at(text):
    """Epoch seconds of an ISO-8601 UTC timestamp, for the clock."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def dashboard(make_app, clock, when=None, **settings):
    """A client with a fully verified session, logged in at ``when`` (default: the clock's start)."""
    if when is not None:
        clock.now = at(when)
    client = make_app(**settings).test_client()
    setup_password(client)
    return client


# -- overview: accounts ------------------------------------------------------------------------

def test_an_empty_overview(authed):
    assert overview(authed) == {
        "accountCounts": {"total": 0, "active": 0, "paused": 0, "rateLimited": 0, "quotaExceeded": 0,
                          "deactivated": 0},
        "usageSummary": {"totalTokens": 0, "totalCost": 0, "inputTokens": 0, "outputTokens": 0,
                         "cachedInputTokens": 0, "periodStart": "2026-11-01T00:00:00Z",
                         "periodEnd": "2026-12-01T00:00:00Z"},
        "requestCount": 0,
        "errorRate": 0,
        "cachedInputShare": 0,
    }


def test_accounts_are_counted_by_status_without_the_deleted(authed):
    statuses = ["active", "active", "active", "paused", "quota_exceeded", "rate_limited", "deactivated"]
    ids = [create_account(authed, f"user{i}@example.com", status=s)["id"] for i, s in enumerate(statuses)]
    gone = create_account(authed, "gone@example.com", status="paused")["id"]
    assert ingest(authed, [{"model": "gpt-4o-mini", "accountId": gone, "inputTokens": 7}]) == {
        "accepted": 1, "duplicates": 0}
    deleted = authed.delete(f"/api/accounts/{gone}")
    assert deleted.status_code == 204 and deleted.get_data() == b""
    patched = authed.patch(f"/api/accounts/{ids[0]}", json={"status": "deactivated"})
    assert patched.status_code == 200 and patched.get_json()["status"] == "deactivated"
    body = overview(authed)
    assert body["accountCounts"] == {"total": 7, "active": 2, "paused": 1, "rateLimited": 1,
                                     "quotaExceeded": 1, "deactivated": 2}
    # The deleted account's log stays counted.
    assert body["requestCount"] == 1 and body["usageSummary"]["inputTokens"] == 7


# -- overview: usage in the billing period -------------------------------------------------------

def test_usage_sums_tokens_and_prices_the_catalog(authed):
    accepted = ingest(authed, [
        # 800k x 0.15 + 200k x 0.075 + 500k x 0.6 = 0.435 USD
        {"model": "gpt-4o-mini", "requestedAt": "2026-11-01T00:00:00Z", "inputTokens": 1_000_000,
         "cachedInputTokens": 200_000, "outputTokens": 500_000},
        # a failed request still cost its tokens: 1000 x 20 + 1000 x 80 = 0.1 USD
        {"model": "o3-pro", "requestedAt": "2026-11-10T12:00:00Z", "inputTokens": 1000, "outputTokens": 1000,
         "status": "error"},
        # 10000 x 1.25 + 2345 x 0.125 + 6789 x 10 = 0.080683125 USD, kept as 0.080683
        {"model": "gpt-5.1-codex", "requestedAt": "2026-11-25T06:00:00Z", "inputTokens": 12345,
         "cachedInputTokens": 2345, "outputTokens": 6789},
        {"model": "an-unpriced-model", "inputTokens": 100, "outputTokens": 100, "cost": 99},
        # before the period: out of the summary
        {"model": "o3-pro", "requestedAt": "2026-10-31T23:59:59.999Z", "inputTokens": 10**9,
         "outputTokens": 10**9},
    ])
    assert accepted == {"accepted": 5, "duplicates": 0}
    summary = overview(authed)["usageSummary"]
    assert summary == {
        "totalTokens": 1_013_445 + 507_889,
        "totalCost": 0.6157,  # 0.615683 rounded to 4 decimals
        "inputTokens": 1_013_445,
        "outputTokens": 507_889,
        "cachedInputTokens": 202_345,
        "periodStart": "2026-11-01T00:00:00Z",
        "periodEnd": "2026-12-01T00:00:00Z",
    }


@pytest.mark.parametrize("output_tokens, total_cost", [
    (0, 0),
    (82, 0.0),  # 49.2 micro-USD -> 0.000049
    (83, 0.0001),  # 49.8 micro-USD -> 0.00005: half rounds up
    (250, 0.0002),  # 150 micro-USD = 0.00015: half rounds up
    (1_000_000, 0.6),
])
def test_total_cost_is_rounded_to_4_decimals(authed, output_tokens, total_cost):
    assert ingest(authed, [{"model": "gpt-4o-mini", "outputTokens": output_tokens}]) == {
        "accepted": 1, "duplicates": 0}
    body = overview(authed)
    assert body["usageSummary"]["totalCost"] == total_cost
    assert body["usageSummary"]["outputTokens"] == output_tokens


@pytest.mark.parametrize("cycle_day, now, start, end", [
    (1, "2026-11-25T07:00:00", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    (1, "2026-12-31T23:59:59", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    (1, "2027-01-01T00:00:00", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"),
    (15, "2026-11-25T07:00:00", "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"),
    (15, "2026-11-10T07:00:00", "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"),
    (15, "2026-11-15T00:00:00", "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"),
    (15, "2026-11-14T23:59:59", "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"),
    (15, "2026-01-10T00:00:00", "2025-12-15T00:00:00Z", "2026-01-15T00:00:00Z"),
    (15, "2026-12-20T00:00:00", "2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"),
    (28, "2027-02-28T12:00:00", "2027-02-28T00:00:00Z", "2027-03-28T00:00:00Z"),
])
def test_the_billing_period_starts_on_the_cycle_day(make_app, clock, cycle_day, now, start, end):
    client = dashboard(make_app, clock, now, BILLING_CYCLE_DAY=cycle_day)
    summary = overview(client)["usageSummary"]
    assert (summary["periodStart"], summary["periodEnd"]) == (start, end)


@pytest.mark.parametrize("cycle_day, now, at_start, before_start, at_end", [
    (1, "2026-11-30T23:58:00", "2026-11-01T00:00:00Z", "2026-10-31T23:59:59.999Z", "2026-12-01T00:00:00Z"),
    (1, "2026-11-30T23:58:00", "2026-11-01T01:00:00+01:00", "2026-11-01T00:59:59.999+01:00",
     "2026-11-30T19:00:00-05:00"),
    (15, "2026-12-14T23:56:00", "2026-11-15T00:00:00Z", "2026-11-14T23:59:59.999Z", "2026-12-15T00:00:00Z"),
])
def test_the_period_includes_its_start_and_excludes_its_end(make_app, clock, cycle_day, now, at_start,
                                                            before_start, at_end):
    client = dashboard(make_app, clock, now, BILLING_CYCLE_DAY=cycle_day)
    accepted = ingest(client, [{"model": "gpt-4o-mini", "requestedAt": at_start, "inputTokens": 1},
                               {"model": "gpt-4o-mini", "requestedAt": before_start, "inputTokens": 10},
                               {"model": "gpt-4o-mini", "requestedAt": at_end, "inputTokens": 100}])
    assert accepted == {"accepted": 3, "duplicates": 0}
    body = overview(client)
    assert body["usageSummary"]["inputTokens"] == 1
    assert body["requestCount"] == 1  # the log stamped a few minutes ahead, at the period's end


# -- overview: the last 24 hours -----------------------------------------------------------------

@pytest.mark.parametrize("stamp, counted", [
    ("2026-11-24T07:00:00Z", 0),  # exactly 24 hours old
    ("2026-11-24T07:00:00.001Z", 1),  # 24 hours minus 1 ms
    ("2026-11-24T06:00:00Z", 0),
    ("2026-11-25T07:00:00Z", 1),  # now
    ("2026-11-25T07:04:00Z", 1),  # 4 minutes ahead
])
def test_request_count_covers_the_last_24_hours(authed, stamp, counted):
    assert ingest(authed, [{"model": "gpt-4o-mini", "requestedAt": stamp, "status": "error"}]) == {
        "accepted": 1, "duplicates": 0}
    body = overview(authed)
    assert body["requestCount"] == counted
    assert body["errorRate"] == (100 if counted else 0)


def test_the_window_moves_with_the_clock(authed, clock):
    assert ingest(authed, [{"model": "gpt-4o-mini"}]) == {"accepted": 1, "duplicates": 0}
    clock.advance(13 * 3600)  # past the 12-hour session: log in again
    assert error(authed.get(OVERVIEW)) == (401, "authentication_required")
    assert login(authed).status_code == 200
    clock.advance(11 * 3600 - 1)
    assert overview(authed)["requestCount"] == 1
    clock.advance(1)  # the log is now exactly 24 hours old
    assert overview(authed)["requestCount"] == 0


@pytest.mark.parametrize("statuses, error_rate", [
    ([], 0),
    (["ok"], 0),
    (["error"], 100),
    (["cancelled"], 0),  # nothing left to count
    (["ok", "ok", "error"], 33.33),
    (["ok", "error", "error"], 66.67),
    (["ok", "ok", "error", "cancelled", "cancelled"], 33.33),
    (["ok", "error", "rate_limit", "quota"], 75),
    (["ok"] * 7 + ["quota"], 12.5),
    (["ok"] * 799 + ["rate_limit"], 0.13),  # 0.125: half rounds up
])
def test_error_rate_counts_failures_among_finished_requests(authed, statuses, error_rate):
    if statuses:
        accepted = ingest(authed, [{"model": "gpt-4o-mini", "status": s} for s in statuses])
        assert accepted == {"accepted": len(statuses), "duplicates": 0}
    body = overview(authed)
    assert body["requestCount"] == len(statuses)
    assert body["errorRate"] == error_rate


def test_error_rate_ignores_failures_older_than_24_hours(authed):
    accepted = ingest(authed, [{"model": "gpt-4o-mini", "requestedAt": "2026-11-24T06:59:59Z", "status": "error"},
                               {"model": "gpt-4o-mini", "status": "ok"}])
    assert accepted == {"accepted": 2, "duplicates": 0}
    body = overview(authed)
    assert (body["requestCount"], body["errorRate"]) == (1, 0)


@pytest.mark.parametrize("statuses, json_value", [
    ([], b"0.0"),
    (["cancelled"], b"0.0"),
    (["ok"], b"0.0"),
    (["error"], b"100.0"),
    (["ok", "error"], b"50.0"),
    (["ok", "ok", "error"], b"33.33"),
])
def test_error_rate_is_always_a_float(authed, statuses, json_value):
    if statuses:
        accepted = ingest(authed, [{"model": "gpt-4o-mini", "status": s} for s in statuses])
        assert accepted == {"accepted": len(statuses), "duplicates": 0}
    response = authed.get(OVERVIEW)
    assert response.status_code == 200
    error_rate = response.get_json()["errorRate"]
    assert type(error_rate) is float and error_rate == float(json_value)
    assert b'"errorRate":' + json_value in response.data


# -- overview: the cached input share of the last 24 hours (contract section 17) ------------------------

def log(stamp, input_tokens, cached, **fields):
    return {"model": "gpt-4o-mini", "requestedAt": stamp, "inputTokens": input_tokens,
            "cachedInputTokens": cached, **fields}


@pytest.mark.parametrize("tokens, share", [
    ([(800, 700)], 87.5),
    ([(500, 500)], 100),
    ([(1000, 0)], 0),
    ([(3, 1)], 33.33),
    ([(3, 2)], 66.67),
    ([(800, 1)], 0.13),  # 0.125: half rounds up (a float's round would give 0.12)
    ([(20_000, 2009)], 10.05),  # 10.045: half rounds up (a float's round gives 10.04)
    ([(30_000, 1)], 0),  # 0.00333...
    ([(100, 100), (900, 0)], 10),  # the window's sums, not the mean of each log's share (50)
    ([(0, 0), (0, 0)], 0),  # requests without input: no division by zero
])
def test_cached_input_share_is_cached_over_input_in_percent(authed, tokens, share):
    # Spread over the window: the raw partial hour at its start, whole hours, now, and a little ahead.
    stamps = ["2026-11-24T07:30:00Z", "2026-11-24T12:00:00Z", "2026-11-25T07:00:00Z", "2026-11-25T07:04:00Z"]
    items = [log(stamps[i % len(stamps)], n, c) for i, (n, c) in enumerate(tokens)]
    assert ingest(authed, items) == {"accepted": len(items), "duplicates": 0}
    body = overview(authed)
    assert body["cachedInputShare"] == share
    assert body["requestCount"] == len(items)


@pytest.mark.parametrize("stamp, counted", [
    ("2026-11-24T07:00:00Z", False),  # exactly 24 hours old
    ("2026-11-24T07:00:00.001Z", True),  # 24 hours minus 1 ms: the raw partial hour
    ("2026-11-24T06:59:59.999Z", False),
    ("2026-11-24T08:00:00Z", True),  # the first whole hour, from the summary
    ("2026-11-25T07:04:00Z", True),  # 4 minutes ahead
])
def test_cached_input_share_covers_the_last_24_hours(authed, stamp, counted):
    # 400 of 1000 now, and 600 of 1000 more at ``stamp``: 50 % with it, 40 % without.
    assert ingest(authed, [log("2026-11-25T06:00:00Z", 1000, 400), log(stamp, 1000, 600)]) == {
        "accepted": 2, "duplicates": 0}
    body = overview(authed)
    assert body["cachedInputShare"] == (50 if counted else 40)
    # The billing period still sums both.
    assert body["usageSummary"]["cachedInputTokens"] == 1000


def test_logs_older_than_24_hours_leave_the_share(authed, clock):
    accepted = ingest(authed, [log("2026-11-20T12:00:00Z", 10**6, 10**6),  # days old, all cached
                               log("2026-11-24T06:59:59Z", 10**6, 0),  # just over 24 hours old, none cached
                               log("2026-11-25T06:59:00Z", 8, 7)])
    assert accepted == {"accepted": 3, "duplicates": 0}
    body = overview(authed)
    assert body["cachedInputShare"] == 87.5
    assert (body["usageSummary"]["inputTokens"], body["usageSummary"]["cachedInputTokens"]) == (2 * 10**6 + 8,
                                                                                                 10**6 + 7)
    clock.advance(3600)  # 08:00: the last log is still in, alone
    assert overview(authed)["cachedInputShare"] == 87.5
    clock.advance(23 * 3600 - 61)  # 06:58:59 the next day: 1 s before the last log is 24 hours old
    assert login(authed).status_code == 200  # the 12-hour session is over
    assert overview(authed)["cachedInputShare"] == 87.5
    clock.advance(1)
    assert overview(authed)["cachedInputShare"] == 0
    assert overview(authed)["requestCount"] == 0


@pytest.mark.parametrize("tokens, json_value", [
    ([], b"0.0"),
    ([(0, 0)], b"0.0"),
    ([(10, 0)], b"0.0"),
    ([(10, 10)], b"100.0"),
    ([(4, 1)], b"25.0"),
    ([(3, 1)], b"33.33"),
])
def test_cached_input_share_is_always_a_float(authed, tokens, json_value):
    if tokens:
        assert ingest(authed, [log("2026-11-25T06:00:00Z", n, c) for n, c in tokens])["accepted"] == len(tokens)
    response = authed.get(OVERVIEW)
    assert response.status_code == 200
    share = response.get_json()["cachedInputShare"]
    assert type(share) is float and share == float(json_value)
    assert b'"cachedInputShare":' + json_value in response.data
