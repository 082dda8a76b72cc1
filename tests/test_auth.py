"""lb.auth: the guard in front of the dashboard API.

Before a password exists the dashboard is open to this machine only (a loopback
address and no proxy header it was not told to trust); afterwards it needs a valid
session, and a session that still owes its TOTP code gets totp_required. The auth
endpoints that need a session are guarded the same way. Each resource's own file
checks its endpoints are guarded; the ingest token is in test_ingest.py.
"""
import pytest

from helpers.data import NEW_PASSWORD, PASSWORD
from helpers.http import (
    AUTH, AUTH_REQUIRED, DASHBOARD, NO_PASSWORD, REMOTE, TOTP_REQUIRED, denied, enable_totp, error, login, ok,
    post, setup_password, state, token, with_cookie
)

DASHBOARD_KEY = {"/api/dashboard/overview": "accountCounts", "/api/models": "models"}


# -- first run: this machine only -----------------------------------------------------------

@pytest.mark.parametrize("environ, authenticated", [({}, True), ({"REMOTE_ADDR": "::1"}, True), (REMOTE, False)])
def test_session_without_password_is_open_to_this_machine_only(client, environ, authenticated):
    assert state(client, environ_base=environ) == dict(NO_PASSWORD, authenticated=authenticated)


@pytest.mark.parametrize("environ, headers, allowed", [
    ({}, {}, True),
    ({"REMOTE_ADDR": "::1"}, {}, True),
    (REMOTE, {}, False),
    ({}, {"X-Forwarded-For": "127.0.0.1"}, False),
    ({}, {"Forwarded": "for=127.0.0.1"}, False),
])
@pytest.mark.parametrize("path", DASHBOARD)
def test_first_run_dashboard_is_open_to_this_machine_only(client, path, environ, headers, allowed):
    response = client.get(path, environ_base=environ, headers=headers)
    if allowed:
        assert DASHBOARD_KEY[path] in ok(response)
    else:
        assert denied(response) == AUTH_REQUIRED


@pytest.mark.parametrize("headers, allowed", [
    ({"X-Forwarded-For": "127.0.0.1"}, True),
    ({"X-Forwarded-For": "203.0.113.9"}, False),
    # Only X-Forwarded-For is read: a proxy speaking Forwarded is never taken for local.
    ({"Forwarded": "for=203.0.113.9"}, False),
    ({"Forwarded": "for=127.0.0.1", "X-Forwarded-For": "127.0.0.1"}, False),
])
def test_first_run_behind_a_trusted_proxy_uses_the_forwarded_address(make_app, headers, allowed):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    response = client.get(DASHBOARD[0], headers=headers)
    if allowed:
        assert ok(response)["requestCount"] == 0
    else:
        assert denied(response) == AUTH_REQUIRED


@pytest.mark.parametrize("headers, environ", [
    ({}, REMOTE),
    ({"X-Forwarded-For": "203.0.113.9"}, {}),
    ({"Forwarded": "for=203.0.113.9"}, {}),
])
@pytest.mark.parametrize("path", DASHBOARD)
def test_without_a_password_only_this_machine_gets_in(client, path, headers, environ):
    refused = client.get(path, headers=headers, environ_base=environ)
    assert error(refused) == (401, "authentication_required")
    local = client.get(path)
    assert local.status_code == 200 and "error" not in local.get_json()


def test_a_password_closes_first_run_mode(app, authed):
    response = app.test_client().get(DASHBOARD[0])
    assert denied(response) == AUTH_REQUIRED


# -- a valid session ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DASHBOARD)
@pytest.mark.parametrize("cookie", [None, "unknown-token", "x" * 500])
def test_dashboard_needs_a_valid_session(app, authed, path, cookie):
    client = app.test_client() if cookie is None else with_cookie(app, cookie)
    response = client.get(path)
    assert denied(response) == AUTH_REQUIRED


def no_cookie(app, authed, clock):
    return app.test_client()


def unknown_cookie(app, authed, clock):
    return with_cookie(app, "x" * 43)


def expired_session(app, authed, clock):
    clock.advance(12 * 3600)
    return authed


def logged_out_copy(app, authed, clock):
    copy = with_cookie(app, token(authed))
    assert post(authed, "/api/dashboard-auth/logout").status_code == 200
    return copy


@pytest.mark.parametrize("make_client", [no_cookie, unknown_cookie, expired_session, logged_out_copy])
@pytest.mark.parametrize("path", DASHBOARD)
def test_a_missing_or_dead_session_is_authentication_required(app, authed, clock, make_client, path):
    response = make_client(app, authed, clock).get(path)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED


@pytest.mark.parametrize("path", DASHBOARD)
def test_a_session_that_owes_its_totp_is_totp_required(app, authed, clock, path):
    earlier = app.test_client()
    assert login(earlier).status_code == 200
    enable_totp(authed, clock)
    later = app.test_client()
    assert login(later).get_json()["isTotpVerified"] is False
    for pending in (earlier, later):
        response = pending.get(path)
        assert response.status_code == 401
        assert response.get_json() == TOTP_REQUIRED
    verified = authed.get(path)
    assert verified.status_code == 200 and "error" not in verified.get_json()


# -- the auth endpoints behind the guard --------------------------------------------------------

@pytest.mark.parametrize("method, path, payload", [
    ("POST", "/password/change", {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
    ("DELETE", "/password", {"password": PASSWORD}),
    ("POST", "/totp/setup/start", None),
    ("POST", "/totp/setup/confirm", {"setupToken": "token", "code": "123456"}),
    ("POST", "/totp/verify", {"code": "123456"}),
    ("POST", "/totp/disable", {"code": "123456"}),
])
def test_protected_auth_endpoints(app, client, method, path, payload):
    # Without a password, a local client gets past the guard and is told what is missing...
    response = client.open(AUTH + path, method=method, json=payload)
    assert error(response) == (400, "password_not_configured")
    assert response.get_json()["error"]["message"] == "No dashboard password is configured"
    # ...a remote one is stopped by the guard, and so is anyone without a session later.
    response = client.open(AUTH + path, method=method, json=payload, environ_base=REMOTE)
    assert denied(response) == AUTH_REQUIRED
    setup_password(app.test_client())
    response = client.open(AUTH + path, method=method, json=payload)
    assert denied(response) == AUTH_REQUIRED
