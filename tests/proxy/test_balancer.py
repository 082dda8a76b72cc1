"""lb.proxy.balancer: which account serves a request, and what an upstream answer does to it (section 10).

Pure functions over account rows and a clock: rows here are plain namespaces
with the Account columns, the clock a number of epoch milliseconds.
"""
from types import SimpleNamespace

import pytest

from lb.proxy import balancer

NOW = 1_795_590_000_000  # 2026-11-25T07:00:00Z
MINUTE = 60_000


def account(id="acc_a", status="active", credentials=True, **fields):
    columns = dict(id=id, status=status, access_token="sealed" if credentials else None,
                   refresh_token="sealed" if credentials else None, resets_at=None, cooldown_until=None,
                   primary_used_percent=None, secondary_used_percent=None, last_used_at=None)
    return SimpleNamespace(**{**columns, **fields})


# -- who may serve -------------------------------------------------------------------------------

@pytest.mark.parametrize("row, expected", [
    (account(), True),
    (account(credentials=False), False),
    (account(status="paused"), False),
    (account(status="deactivated"), False),
    (account(status="rate_limited", resets_at=NOW + 1), False),
    (account(status="rate_limited", resets_at=NOW), True),  # its reset has come
    (account(status="quota_exceeded", resets_at=NOW - MINUTE), True),
    (account(status="quota_exceeded", resets_at=None), False),  # usage_not_included: the admin must act
    (account(cooldown_until=NOW + 1), False),
    (account(cooldown_until=NOW), True),
    (account(status="paused", resets_at=NOW - MINUTE), False),  # a pause is never lifted by time
])
def test_who_is_eligible(row, expected):
    assert balancer.eligible(row, NOW) is expected


def test_the_least_used_account_serves_secondary_then_primary_then_least_recently_used():
    rows = [account("acc_1", secondary_used_percent=40.0, primary_used_percent=1.0),
            account("acc_2", secondary_used_percent=10.0, primary_used_percent=90.0, last_used_at=NOW - 1),
            account("acc_3", secondary_used_percent=10.0, primary_used_percent=90.0, last_used_at=NOW - 2),
            account("acc_4", secondary_used_percent=10.0, primary_used_percent=95.0)]
    assert balancer.choose(rows, NOW).account.id == "acc_3"
    assert balancer.choose(rows, NOW, tried={"acc_3"}).account.id == "acc_2"
    assert balancer.choose(rows, NOW, tried={"acc_2", "acc_3"}).account.id == "acc_4"


def test_an_account_never_seen_counts_as_unused():
    rows = [account("acc_seen", secondary_used_percent=0.5), account("acc_new")]
    assert balancer.choose(rows, NOW).account.id == "acc_new"


def test_a_sticky_pin_holds_while_its_account_is_eligible():
    rows = [account("acc_busy", secondary_used_percent=80.0), account("acc_idle")]
    assert balancer.choose(rows, NOW, pinned_id="acc_busy").account.id == "acc_busy"
    rows[0].status, rows[0].resets_at = "rate_limited", NOW + MINUTE
    assert balancer.choose(rows, NOW, pinned_id="acc_busy").account.id == "acc_idle"  # the pin moves


# -- why nobody may serve ----------------------------------------------------------------------------

def test_an_exhausted_pool_is_usage_limit_reached_with_the_earliest_reset():
    rows = [account("acc_1", status="rate_limited", resets_at=NOW + 30 * MINUTE),
            account("acc_2", status="quota_exceeded", resets_at=NOW + 5 * MINUTE),
            account("acc_3", status="paused"), account("acc_4", credentials=False)]
    choice = balancer.choose(rows, NOW)
    assert (choice.account, choice.refusal, choice.resets_at) == (None, "usage_limit_reached", NOW + 5 * MINUTE)


def test_a_pool_only_cooling_down_says_when_to_retry():
    rows = [account("acc_1", cooldown_until=NOW + 2500), account("acc_2", cooldown_until=NOW + 9000)]
    choice = balancer.choose(rows, NOW)
    assert (choice.refusal, choice.retry_after_s) == ("cooldown", 3)


@pytest.mark.parametrize("rows, says", [
    ([], "No accounts are configured"),
    ([account(credentials=False)], "No account has credentials; import an auth.json"),
    ([account(status="paused"), account("acc_b", status="deactivated")],
     "No account is active: all are paused or deactivated"),
])
def test_otherwise_no_accounts_says_why(rows, says):
    choice = balancer.choose(rows, NOW)
    assert (choice.account, choice.refusal, choice.message) == (None, "no_accounts", says)


def test_accounts_already_tried_count_as_unavailable():
    rows = [account("acc_1"), account("acc_2")]
    assert balancer.choose(rows, NOW, tried={"acc_1", "acc_2"}).refusal == "no_accounts"


# -- what an upstream answer does --------------------------------------------------------------------

HEADERS = {"x-codex-primary-used-percent": "42.5", "x-codex-primary-reset-at": str(NOW // 1000 + 600),
           "x-codex-secondary-used-percent": "7", "x-codex-secondary-reset-after-seconds": "3600"}
USAGE = {"primary_used_percent": 42.5, "primary_resets_at": NOW + 600_000,
         "secondary_used_percent": 7.0, "secondary_resets_at": NOW + 3_600_000, "usage_checked_at": NOW}


def test_every_answer_updates_the_accounts_usage():
    assert balancer.usage_changes(HEADERS, NOW) == USAGE
    assert balancer.usage_changes({"x-codex-primary-used-percent": "NaN"}, NOW) == {}


def test_a_stream_that_starts_marks_the_account_used_and_ends_a_wait():
    outcome = balancer.after_success(account(status="rate_limited", resets_at=NOW - 1), HEADERS, NOW)
    assert outcome.action == "serve"
    assert outcome.changes == {**USAGE, "last_used_at": NOW, "status": "active", "resets_at": None,
                               "status_reason": None}
    assert balancer.after_success(account(), {}, NOW).changes == {"last_used_at": NOW}


@pytest.mark.parametrize("status, error, headers, expected", [
    (429, {"type": "usage_limit_reached", "resets_at": NOW // 1000 + 900}, {},
     ("failover", "rate_limit", "usage_limit_reached", {"status": "rate_limited", "resets_at": NOW + 900_000})),
    (429, {"code": "rate_limit_exceeded", "resets_in_seconds": 120}, {},
     ("failover", "rate_limit", "rate_limit_exceeded", {"status": "rate_limited", "resets_at": NOW + 120_000})),
    (429, {"type": "usage_limit_reached"}, {"x-codex-primary-reset-at": str(NOW // 1000 + 60)},
     ("failover", "rate_limit", "usage_limit_reached", {"status": "rate_limited", "resets_at": NOW + 60_000})),
    (429, {"type": "usage_limit_reached"}, {},
     ("failover", "rate_limit", "usage_limit_reached", {"status": "rate_limited", "resets_at": NOW + 5 * MINUTE})),
    (429, {"code": "insufficient_quota"}, {},
     ("failover", "quota", "insufficient_quota", {"status": "quota_exceeded", "resets_at": NOW + 60 * MINUTE})),
    (429, {"type": "usage_not_included"}, {},
     ("failover", "quota", "usage_not_included", {"status": "quota_exceeded", "resets_at": None})),
    (403, {"code": "account_deactivated"}, {}, ("pass_through", "error", "account_deactivated", {})),
    (401, {"code": "account_suspended"}, {},
     ("failover", "error", "account_suspended", {"status": "deactivated", "resets_at": None})),
    (200, {"code": "usage_limit_reached", "resets_in_seconds": 30}, {},  # inside a response.failed event
     ("failover", "rate_limit", "usage_limit_reached", {"status": "rate_limited", "resets_at": NOW + 30_000})),
    (500, {"message": "boom"}, {}, ("failover", "error", "upstream_error", {})),
    (200, {"code": "server_is_overloaded"}, {}, ("failover", "error", "server_is_overloaded", {})),
    (200, {"code": "context_length_exceeded"}, {}, ("pass_through", "error", "context_length_exceeded", {})),
    (400, {"code": "context_length_exceeded"}, {}, ("pass_through", "error", "context_length_exceeded", {})),
])
def test_what_an_upstream_error_does_to_the_account(status, error, headers, expected):
    action, log_status, code, changes = expected
    outcome = balancer.after_error(status, error, headers, NOW)
    assert (outcome.action, outcome.log_status, outcome.error_code) == (action, log_status, code)
    status_change = {k: v for k, v in outcome.changes.items() if k in ("status", "resets_at")}
    assert status_change == changes
    if "status" in changes:
        assert outcome.changes["status_reason"] == code


@pytest.mark.parametrize("headers, error, cooldown_ms", [
    ({"retry-after": "7"}, {"code": "too_many_requests"}, 7000),
    ({}, {"message": "Rate limit reached. Please try again in 1.5s."}, 1500),
    ({}, {"message": "try again in 250ms"}, 250),
    ({}, None, 10_000),
])
def test_a_momentary_429_cools_the_account_without_changing_its_status(headers, error, cooldown_ms):
    outcome = balancer.after_error(429, error, headers, NOW)
    assert outcome.action == "failover" and outcome.log_status == "rate_limit"
    assert outcome.changes == {"cooldown_until": NOW + cooldown_ms}
