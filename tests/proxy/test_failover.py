"""lb.proxy.failover through the proxy: account choice, stickiness, failover, and what answers do to accounts."""
import pytest

from fixtureapps.token_server import Answer
from fixtureapps.upstream import Compact, Drop, Fail, Stream
from helpers.data import ACCESS_2, NOW_MS, NOW_S, REFRESH_2, logs, new_tokens, pool_account, row, stored_tokens, write
from helpers.http import CODEX, ask, openai_error, sse

from lb import crypto, refresh

pytestmark = pytest.mark.uses_upstream

USAGE_LIMIT = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                         "plan_type": "plus", "resets_at": NOW_S + 900}}


@pytest.fixture
def three(app, clock):
    """Accounts a, b, c, tried in that order (b and c have used more of their week)."""
    return (pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=10.0),
            pool_account(app, clock, "c", secondary_used_percent=20.0))


def served_by(app):
    return [(log.account_id, log.status, log.error_code) for log in logs(app)]


# -- choice ----------------------------------------------------------------------------------

def test_the_least_used_account_serves_then_the_least_recently_used(app, client, clock):
    a = pool_account(app, clock, "a", secondary_used_percent=30.0, primary_used_percent=1.0)
    b = pool_account(app, clock, "b", secondary_used_percent=5.0, primary_used_percent=50.0)
    c = pool_account(app, clock, "c", secondary_used_percent=5.0, primary_used_percent=10.0)
    ask(client)
    assert served_by(app)[-1][0] == c  # lowest secondary, then lowest primary
    write(app, b, primary_used_percent=10.0)
    clock.advance(1)
    ask(client)
    assert served_by(app)[-1][0] == b  # tied with c, and c served last
    assert row(app, c).last_used_at == NOW_MS and row(app, a).last_used_at is None


def test_the_upstream_usage_headers_become_the_account_usage(app, authed, clock, upstream):
    a, b = pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=1.0)
    upstream.plan("ws-a", Stream(headers={"x-codex-primary-used-percent": "40", "x-codex-secondary-used-percent": "70",
                                          "x-codex-primary-reset-at": str(NOW_S + 600)}))
    clock.advance(30)
    ask(authed)
    account = next(acc for acc in authed.get("/api/accounts").get_json()["accounts"] if acc["id"] == a)
    assert account["usage"] == {"primaryUsedPercent": 40.0, "primaryResetsAt": "2026-11-25T07:10:00Z",
                                "secondaryUsedPercent": 70.0, "secondaryResetsAt": None}
    assert account["usageCheckedAt"] == "2026-11-25T07:00:30Z"  # when an answer last carried its usage
    ask(authed)  # b's answer carries no usage: its figures stay unchecked
    assert next(acc for acc in authed.get("/api/accounts").get_json()["accounts"] if acc["id"] == b)[
        "usageCheckedAt"] is None
    assert [log.account_id for log in logs(app)] == [a, b]  # a now has used more than b


def test_a_paused_account_is_never_used_and_the_proxy_never_changes_a_pause(app, client, clock, upstream):
    paused = pool_account(app, clock, "a", status="paused")
    response = ask(client)
    assert openai_error(response)[:2] == (503, "no_accounts")
    assert "paused" in response.get_json()["error"]["message"]
    assert upstream.count() == 0 and row(app, paused).status == "paused"
    assert served_by(app) == [(None, "error", "no_accounts")]


@pytest.mark.parametrize("accounts, message", [
    ([], "No accounts are configured"),
    ([{"status": "deactivated"}], "paused or deactivated"),
    ([{"access_token": None}], "credentials"),
])
def test_no_usable_account_is_503_saying_why(app, client, clock, accounts, message):
    for i, columns in enumerate(accounts):
        pool_account(app, clock, f"n{i}", **columns)
    response = ask(client)
    assert openai_error(response)[:3] == (503, "no_accounts", "server_error")
    assert message in response.get_json()["error"]["message"]
    assert "Retry-After" not in response.headers


# -- failover --------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, status, code", [  # the status and code of the failed attempt
    (Fail(500, {"error": {"message": "internal"}}), 500, "upstream_error"),
    (Fail(503, {"error": {"code": "server_is_overloaded", "message": "busy"}}), 503, "server_is_overloaded"),
    (Drop(), 502, "upstream_unavailable"),
    (Stream(first="failed", error={"code": "server_error", "message": "boom"}), 200, "server_error"),
    (Stream(first="error", error={"code": "server_is_overloaded", "message": "busy"}), 200, "server_is_overloaded"),
    (Stream(first_delay=2.5), 502, "stream_idle_timeout"),  # headers, then silence past the read timeout (2 s)
])
def test_a_failure_before_the_first_byte_moves_to_the_next_account(app, client, upstream, three, answer, status,
                                                                   code, caplog):
    a, b, _ = three
    upstream.plan("ws-a", answer)
    response = ask(client)
    assert response.status_code == 200
    assert [r.getMessage() for r in caplog.records if "trying another account" in r.getMessage()] == [
        f"account {a}: upstream {status} {code}; trying another account"]
    assert [kind for kind, _ in sse(response.get_data())][-1] == "response.completed"
    assert upstream.accounts() == ["ws-a", "ws-b"]
    assert served_by(app) == [(b, "ok", None)]
    assert row(app, a).status == "active" and row(app, a).cooldown_until is None


def test_connection_refused_moves_on(make_app, clock, upstream, token_server):
    app = make_app(UPSTREAM_URL="http://127.0.0.1:9/backend-api", OAUTH_TOKEN_URL=token_server.url)
    pool_account(app, clock, "a")
    response = ask(app.test_client())
    assert openai_error(response)[:2] == (502, "upstream_error")
    assert served_by(app)[0][1:] == ("error", "upstream_unavailable")


def test_at_most_three_accounts_are_tried_then_the_last_answer_goes_back_as_sent(app, client, clock, upstream,
                                                                                  three):
    pool_account(app, clock, "d", secondary_used_percent=30.0)
    for name, status in (("ws-a", 500), ("ws-b", 502), ("ws-c", 503)):
        upstream.plan(name, Fail(status, {"error": {"message": f"down {status}"}}, headers={"x-request-id": "up-1"}))
    response = ask(client)
    assert response.status_code == 503 and response.get_json() == {"error": {"message": "down 503"}}
    assert response.headers["x-request-id"] == "up-1"
    assert upstream.accounts() == ["ws-a", "ws-b", "ws-c"]
    assert served_by(app) == [(three[2], "error", "upstream_error")]


def test_the_client_own_errors_pass_through_without_failover(app, client, upstream, three):
    upstream.plan("ws-a", Fail(400, {"error": {"code": "context_length_exceeded", "message": "too long"}}))
    response = ask(client)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "context_length_exceeded"
    assert upstream.accounts() == ["ws-a"]
    assert served_by(app) == [(three[0], "error", "context_length_exceeded")]
    assert row(app, three[0]).status == "active"


def test_a_usage_limit_marks_the_account_and_moves_on(app, client, upstream, three):
    a, b, _ = three
    upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
    assert ask(client).status_code == 200
    account = row(app, a)
    assert (account.status, account.resets_at, account.status_reason) == ("rate_limited", NOW_MS + 900_000,
                                                                          "usage_limit_reached")
    assert served_by(app) == [(b, "ok", None)]


@pytest.mark.parametrize("error, status, resets_at", [
    ({"code": "insufficient_quota"}, "quota_exceeded", NOW_MS + 3600_000),
    ({"type": "usage_not_included"}, "quota_exceeded", None),
    ({"code": "account_deleted"}, "deactivated", None),
])
def test_what_other_upstream_codes_do_to_the_account(app, client, upstream, three, error, status, resets_at):
    upstream.plan("ws-a", Fail(429 if status == "quota_exceeded" else 403, {"error": error}))
    ask(client)
    assert (row(app, three[0]).status, row(app, three[0]).resets_at) == (status, resets_at)


def test_a_momentary_429_cools_the_account_for_its_retry_after(app, client, clock, upstream):
    a = pool_account(app, clock, "a")
    upstream.plan("ws-a", Fail(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"}))
    response = ask(client)
    # The only account answered a plain 429: that answer goes back, and the account cools for 7 s.
    assert response.status_code == 429 and response.get_json() == {"error": {"message": "slow down"}}
    assert (row(app, a).status, row(app, a).cooldown_until) == ("active", NOW_MS + 7000)
    cooling = ask(client)
    assert openai_error(cooling)[:2] == (503, "no_accounts") and cooling.headers["Retry-After"] == "7"
    clock.advance(7)
    assert ask(client).status_code == 200
    assert [log.status for log in logs(app)] == ["rate_limit", "error", "ok"]


def test_an_exhausted_pool_is_429_with_the_earliest_reset(app, client, clock, upstream):
    pool_account(app, clock, "a", status="rate_limited", resets_at=NOW_MS + 600_000)
    pool_account(app, clock, "b", status="quota_exceeded", resets_at=NOW_MS + 300_000)
    pool_account(app, clock, "c", status="paused")
    response = ask(client)
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert (error["type"], error["code"], error["resets_at"], error["param"]) == (
        "usage_limit_reached", "usage_limit_reached", NOW_S + 300, None)
    assert response.headers["Retry-After"] == "300"
    assert upstream.count() == 0
    assert served_by(app) == [(None, "rate_limit", "usage_limit_reached")]


def test_a_limited_account_comes_back_when_its_reset_passes(app, client, clock, upstream):
    a = pool_account(app, clock, "a")
    upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
    assert ask(client).status_code == 429  # passed on as the upstream sent it: the only account
    assert row(app, a).status == "rate_limited"
    assert openai_error(ask(client))[:2] == (429, "usage_limit_reached")
    clock.advance(900)
    assert ask(client).status_code == 200
    account = row(app, a)
    assert (account.status, account.resets_at, account.status_reason) == ("active", None, None)
    assert [log.error_code for log in logs(app)] == ["usage_limit_reached", "usage_limit_reached", None]


# -- tokens ----------------------------------------------------------------------------------

def test_a_401_refreshes_the_token_once_and_asks_again(app, client, upstream, token_server, three):
    upstream.plan("ws-a", Fail(401, {"error": {"message": "token expired"}}))
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2))
    assert ask(client).status_code == 200
    assert upstream.accounts() == ["ws-a", "ws-a"] and len(token_server.requests) == 1
    assert upstream.requests[1].headers["authorization"] == f"Bearer {ACCESS_2}"
    assert stored_tokens(app, three[0])[1:] == (ACCESS_2, REFRESH_2)
    assert served_by(app) == [(three[0], "ok", None)]


def test_a_401_on_a_token_another_instance_has_replaced_asks_again_with_its_tokens(app, client, upstream,
                                                                                   token_server, three, monkeypatch):
    fresh_credentials = refresh.fresh_credentials

    def refreshed_elsewhere(account_id, now, account=None, rejected=None):
        credentials = fresh_credentials(account_id, now, account, rejected)
        if rejected is None:  # the old token goes upstream while another instance gets a 401 with it and refreshes
            fernet = app.extensions["lb_fernet"]
            write(app, account_id, access_token=crypto.seal(ACCESS_2, fernet),
                  refresh_token=crypto.seal(REFRESH_2, fernet))
        return credentials

    monkeypatch.setattr(refresh, "fresh_credentials", refreshed_elsewhere)
    upstream.plan("ws-a", Fail(401, {"error": {"message": "token expired"}}))
    assert ask(client).status_code == 200
    assert upstream.accounts() == ["ws-a", "ws-a"] and token_server.requests == []  # no second refresh
    assert upstream.requests[1].headers["authorization"] == f"Bearer {ACCESS_2}"
    assert served_by(app) == [(three[0], "ok", None)]


def test_a_401_on_compaction_refreshes_the_token_once_and_asks_again(app, client, upstream, token_server, three):
    upstream.plan("ws-a", Fail(401, {"error": {"message": "token expired"}}), Compact())
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2))
    response = client.post(CODEX + "/compact", json={"model": "gpt-5.3-codex", "input": []})
    assert response.status_code == 200 and response.get_json()["object"] == "response.compaction"
    assert upstream.accounts() == ["ws-a", "ws-a"] and len(token_server.requests) == 1
    assert upstream.requests[1].headers["authorization"] == f"Bearer {ACCESS_2}"
    assert [(log.account_id, log.status, log.input_tokens) for log in logs(app)] == [(three[0], "ok", 50)]


def test_a_permanent_refresh_failure_deactivates_and_moves_on(app, client, upstream, token_server, three):
    upstream.plan("ws-a", Fail(401, {"error": {"message": "token revoked"}}))
    token_server.answer(Answer(400, {"error": {"code": "refresh_token_reused"}}))
    assert ask(client).status_code == 200
    assert (row(app, three[0]).status, row(app, three[0]).status_reason) == ("deactivated", "refresh_token_reused")
    assert upstream.accounts() == ["ws-a", "ws-b"]


def test_a_401_after_a_fresh_token_deactivates_and_moves_on(app, client, upstream, token_server, three):
    upstream.plan("ws-a", Fail(401, {}), Fail(401, {"error": {"message": "still no"}}))
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2))
    assert ask(client).status_code == 200
    assert (row(app, three[0]).status, row(app, three[0]).status_reason) == ("deactivated", "upstream_unauthorized")
    assert upstream.accounts() == ["ws-a", "ws-a", "ws-b"]


def test_a_transient_refresh_failure_skips_the_account_and_counts_as_tried(app, client, clock, upstream,
                                                                            token_server, three):
    pool_account(app, clock, "d", secondary_used_percent=30.0)
    clock.advance(11 * 86400)  # every access token has expired: each is refreshed before use
    token_server.default = Answer(503, {})
    response = ask(client)
    assert openai_error(response)[:2] == (503, "no_accounts")
    assert "refresh_http_503" in response.get_json()["error"]["message"]
    assert len(token_server.requests) == 3 and upstream.count() == 0
    assert all(row(app, account_id).status == "active" for account_id in three)
    assert served_by(app) == [(three[2], "error", "refresh_http_503")]


# -- stickiness ------------------------------------------------------------------------------

def test_a_prompt_cache_key_stays_on_its_account(app, client, clock, upstream, three):
    a, b, _ = three
    ask(client, {"prompt_cache_key": "conv-1"})
    write(app, a, secondary_used_percent=90.0)  # a is no longer the least used
    clock.advance(1800)
    ask(client, {"prompt_cache_key": "conv-1"})
    ask(client, {"prompt_cache_key": "conv-2"})
    assert [log.account_id for log in logs(app)] == [a, a, b]


def test_a_pin_lapses_after_an_idle_hour(app, client, clock, upstream, three):
    a, b, _ = three
    ask(client, {"prompt_cache_key": "conv-1"})
    write(app, a, secondary_used_percent=90.0)
    clock.advance(3600)
    ask(client, {"prompt_cache_key": "conv-1"})
    assert [log.account_id for log in logs(app)] == [a, b]


def test_a_pin_moves_when_its_account_stops_being_eligible(app, client, clock, upstream, three):
    a, b, c = three
    ask(client, {"prompt_cache_key": "conv-1"})
    write(app, a, status="paused")
    ask(client, {"prompt_cache_key": "conv-1"})
    write(app, a, status="active")
    write(app, b, secondary_used_percent=50.0)
    ask(client, {"prompt_cache_key": "conv-1"})
    assert [log.account_id for log in logs(app)] == [a, b, b]


def test_sticky_sessions_off_pins_nothing(app, authed, clock, upstream, three):
    a, b, _ = three
    assert authed.patch("/api/settings", json={"stickySessions": False}).get_json()["stickySessions"] is False
    ask(authed, {"prompt_cache_key": "conv-1"})
    write(app, a, secondary_used_percent=90.0)
    ask(authed, {"prompt_cache_key": "conv-1"})
    assert [log.account_id for log in logs(app)] == [a, b]
