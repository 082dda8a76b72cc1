"""lb.quota: an account's /wham/usage (contract 13.2), polled now through POST /api/accounts/<id>/refresh-usage.

The answer sets the plan, both windows and usageCheckedAt; limit_reached
with a future reset makes the account rate_limited until then (and the
balancer skips it before any request fails); a passed reset brings it back;
401 refreshes the token once; 402/403/404 deactivate; other failures change
nothing and are 502 upstream_error.
"""
import pytest

from fixtureapps.upstream import Usage, usage_payload
from helpers.data import ACCESS_2, NOW_MS, logs, new_tokens, pool_account, row
from helpers.http import ask, create_account, error, ok, post

pytestmark = pytest.mark.uses_upstream


def refresh_usage(client, account_id):
    return post(client, f"/api/accounts/{account_id}/refresh-usage")


def test_an_idle_accounts_usage_and_plan_come_from_the_poll(app, authed, clock, upstream):
    account = pool_account(app, clock, "a")
    upstream.usage["ws-a"] = [Usage(body=usage_payload(plan="pro", primary=(42.5, 600), secondary=(7, 3600)))]
    clock.advance(60)
    body = ok(refresh_usage(authed, account))
    assert (body["planType"], body["status"], body["usageCheckedAt"]) == ("pro", "active", "2026-11-25T07:01:00Z")
    assert body["usage"] == {"primaryUsedPercent": 42.5, "primaryResetsAt": "2026-11-25T07:11:00Z",
                             "secondaryUsedPercent": 7.0, "secondaryResetsAt": "2026-11-25T08:01:00Z"}
    [request] = [r for r in upstream.requests if r.path.endswith("/wham/usage")]
    assert request.headers["chatgpt-account-id"] == "ws-a" and request.headers["authorization"].startswith("Bearer ")
    assert logs(app) == []  # no proxied request was needed


def test_a_reached_limit_makes_the_account_wait_and_the_balancer_skip_it(app, authed, clock, upstream):
    limited, other = pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=90.0)
    upstream.usage["ws-a"] = [Usage(body=usage_payload(primary=(100, 1200), secondary=(60, 7200),
                                                       limit_reached=True))]
    body = ok(refresh_usage(authed, limited))
    assert (body["status"], body["statusReason"], body["resetsAt"]) == ("rate_limited", "usage_limit_reached",
                                                                        "2026-11-25T07:20:00Z")
    assert ask(authed).status_code == 200  # "a" is the less used, but the poll saw it at its limit
    assert [log.account_id for log in logs(app)] == [other]


def test_a_waiting_account_whose_reset_has_passed_comes_back(app, authed, clock, upstream):
    account = pool_account(app, clock, "a", status="rate_limited", resets_at=NOW_MS + 1000,
                           status_reason="usage_limit_reached")
    clock.advance(5)
    body = ok(refresh_usage(authed, account))
    assert (body["status"], body["statusReason"], body["resetsAt"]) == ("active", None, None)


def test_a_401_refreshes_the_token_once_and_asks_again(app, authed, clock, upstream, token_server):
    account = pool_account(app, clock, "a")
    upstream.usage["ws-a"] = [Usage(401, {"error": {"message": "token expired"}})]
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token="rt_new-refresh-token-0123456789"))
    assert ok(refresh_usage(authed, account))["usageCheckedAt"] is not None
    assert len(token_server.requests) == 1
    asked = [r.headers["authorization"] for r in upstream.requests if r.path.endswith("/wham/usage")]
    assert len(asked) == 2 and asked[1] == f"Bearer {ACCESS_2}"


@pytest.mark.parametrize("status", [402, 403, 404])
def test_402_403_and_404_deactivate_the_account(app, authed, clock, upstream, status):
    account = pool_account(app, clock, "a")
    upstream.usage["ws-a"] = [Usage(status, {"detail": "no"})]
    body = ok(refresh_usage(authed, account))
    assert (body["status"], body["statusReason"]) == ("deactivated", f"usage_api_{status}")


@pytest.mark.parametrize("answer", [Usage(500, {"error": "server_error"}), Usage(429, {}),
                                    Usage(200, b"not json"), Usage(200, ["plus"])])
def test_other_failures_change_nothing_and_answer_502(app, authed, clock, upstream, answer):
    account = pool_account(app, clock, "a")
    before = ok(authed.get(f"/api/accounts/{account}"))
    upstream.usage["ws-a"] = [answer]
    clock.advance(60)
    assert error(refresh_usage(authed, account)) == (502, "upstream_error")
    assert ok(authed.get(f"/api/accounts/{account}")) == before


def test_an_unreachable_upstream_is_502_and_changes_nothing(make_app, authed, clock, token_server):
    app = make_app(UPSTREAM_URL="http://127.0.0.1:9/backend-api", OAUTH_TOKEN_URL=token_server.url)
    client = app.test_client()
    account = pool_account(app, clock, "a")
    client.set_cookie("dashboard_session", authed.get_cookie("dashboard_session").value)
    assert error(refresh_usage(client, account)) == (502, "upstream_error")
    assert row(app, account).usage_checked_at is None


def test_a_paused_account_stays_paused_whatever_its_usage_says(app, authed, clock, upstream):
    account = pool_account(app, clock, "a", status="paused")
    upstream.usage["ws-a"] = [Usage(body=usage_payload(primary=(100, 600), limit_reached=True))]
    body = ok(refresh_usage(authed, account))
    assert body["status"] == "paused" and body["usage"]["primaryUsedPercent"] == 100.0


def test_a_manual_account_has_nothing_to_poll_and_an_unknown_one_is_404(authed, upstream):
    manual = create_account(authed)
    assert error(refresh_usage(authed, manual["id"])) == (409, "no_credentials")
    assert error(refresh_usage(authed, "acc_unknown")) == (404, "account_not_found")
    assert upstream.count("/wham/usage") == 0


def test_refresh_usage_needs_a_session(app, client, clock, upstream):
    account = pool_account(app, clock, "a")
    post(client, "/api/dashboard-auth/password/setup", {"password": "correct horse battery"})
    assert error(refresh_usage(app.test_client(), account)) == (401, "authentication_required")
    assert upstream.count("/wham/usage") == 0
