"""lb.sessions: server-side sessions, the cookie, and the password behind them.

GET /session in each state, logout, the 12-hour expiry, the cookie's flags, password
setup (the bootstrap token for a remote client), login, change, removal, and the
reset-auth command. The guard is in test_auth.py, the rate limit in test_ratelimit.py,
TOTP in test_totp.py.
"""
import re

import pytest

from helpers.data import BOOTSTRAP, NEW_PASSWORD, PASSWORD
from helpers.http import (
    AUTH, AUTH_REQUIRED, COOKIE, DASHBOARD, NO_PASSWORD, REMOTE, SIGNED_IN, SIGNED_OUT, change, denied,
    enable_totp, error, login, names_field, ok, post, remove, session_cookie, setup_password, state, token,
    with_cookie
)


def assert_cleared(response):
    value, flags = session_cookie(response)
    assert value == "" and flags["max-age"] == "0" and flags["path"] == "/"


# -- GET /session, logout, expiry ----------------------------------------------------------

def test_session_after_setup_is_password_verified(client):
    response = setup_password(client)
    assert ok(response) == SIGNED_IN
    assert state(client) == SIGNED_IN


def test_session_without_cookie_once_a_password_exists(app, authed):
    assert state(app.test_client()) == SIGNED_OUT


def test_session_after_logout(app, authed):
    saved = token(authed)
    response = post(authed, AUTH + "/logout")
    assert ok(response) == {"status": "ok"}
    assert_cleared(response)
    assert state(authed) == SIGNED_OUT
    # The session ended on the server: a copied cookie is worthless.
    copy = with_cookie(app, saved)
    assert state(copy) == SIGNED_OUT
    for path in DASHBOARD:
        response = copy.get(path)
        assert denied(response) == AUTH_REQUIRED


def test_logout_without_a_session_is_fine(client):
    response = post(client, AUTH + "/logout")
    assert ok(response) == {"status": "ok"}
    assert_cleared(response)


@pytest.mark.parametrize("path", DASHBOARD)
def test_session_expires_12_hours_after_login_whatever_its_use(authed, clock, path):
    clock.advance(6 * 3600)
    assert authed.get(path).status_code == 200
    clock.advance(6 * 3600 - 1)
    assert authed.get(path).status_code == 200  # use does not extend it
    assert state(authed) == SIGNED_IN
    clock.advance(1)
    response = authed.get(path)
    assert denied(response) == AUTH_REQUIRED
    assert state(authed) == SIGNED_OUT


# -- the cookie -------------------------------------------------------------------

@pytest.mark.parametrize("base_url, secure", [("http://localhost", False), ("https://localhost", True)])
@pytest.mark.parametrize("endpoint", ["setup", "login"])
def test_session_cookie_flags(client, base_url, secure, endpoint):
    if endpoint == "login":
        setup_password(client)
    response = post(client, f"{AUTH}/password/{endpoint}", {"password": PASSWORD}, base_url=base_url)
    assert ok(response) == SIGNED_IN
    value, flags = session_cookie(response)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", value)
    assert flags["max-age"] == "43200"
    assert flags["path"] == "/" and flags["samesite"] == "Lax" and "httponly" in flags
    assert ("secure" in flags) == secure


@pytest.mark.parametrize("trusted, secure", [(0, False), (1, True)])
def test_secure_flag_behind_a_proxy_only_when_trusted(make_app, trusted, secure):
    client = make_app(TRUSTED_PROXIES=trusted).test_client()
    setup_password(client)
    response = post(client, AUTH + "/password/login", {"password": PASSWORD},
                    headers={"X-Forwarded-Proto": "https"})
    assert ok(response) == SIGNED_IN
    assert ("secure" in session_cookie(response)[1]) == secure


def test_login_issues_a_new_token_and_ends_the_old_session(app, authed):
    old = token(authed)
    response = login(authed)
    assert ok(response) == SIGNED_IN
    new, _ = session_cookie(response)
    assert new != old and token(authed) == new
    assert state(with_cookie(app, old)) == SIGNED_OUT
    assert authed.get(DASHBOARD[0]).status_code == 200


# -- POST /password/setup -------------------------------------------------------------

@pytest.mark.parametrize("request_kwargs", [
    {"environ_base": REMOTE},
    {"headers": {"X-Forwarded-For": "127.0.0.1"}},
])
@pytest.mark.parametrize("extra", [{}, {"bootstrapToken": None}, {"bootstrapToken": ""},
                                   {"bootstrapToken": "wrong"}, {"bootstrapToken": BOOTSTRAP.upper()}])
def test_remote_setup_needs_the_bootstrap_token(client, request_kwargs, extra):
    response = post(client, AUTH + "/password/setup", {"password": PASSWORD, **extra}, **request_kwargs)
    assert error(response) == (401, "bootstrap_required")
    assert "Set-Cookie" not in response.headers
    assert state(client) == dict(NO_PASSWORD, authenticated=True)


def test_remote_setup_with_the_bootstrap_token(client):
    payload = {"password": PASSWORD, "bootstrapToken": BOOTSTRAP}
    response = post(client, AUTH + "/password/setup", payload, environ_base=REMOTE)
    assert ok(response) == SIGNED_IN
    assert session_cookie(response)[1]["max-age"] == "43200"
    assert client.get(DASHBOARD[0], environ_base=REMOTE).status_code == 200


@pytest.mark.parametrize("environ", [{}, REMOTE])
def test_setup_twice_is_a_conflict(authed, environ):
    payload = {"password": NEW_PASSWORD, "bootstrapToken": BOOTSTRAP}
    response = post(authed, AUTH + "/password/setup", payload, environ_base=environ)
    assert error(response) == (409, "password_already_configured")
    assert error(login(authed, NEW_PASSWORD)) == (401, "invalid_credentials")


@pytest.mark.parametrize("length, status", [(7, 422), (8, 200), (256, 200), (257, 422)])
def test_setup_password_length(client, length, status):
    password = "p" * length
    response = post(client, AUTH + "/password/setup", {"password": password})
    if status == 200:
        assert ok(response) == SIGNED_IN
        assert login(client, password).status_code == 200
    else:
        assert error(response) == (422, "validation_error")
        assert response.get_json()["error"]["message"].startswith("password ")
        assert state(client)["isPasswordConfigured"] is False


@pytest.mark.parametrize("payload", [{}, {"password": None}, {"password": 12345678}, {"password": ["p" * 8]},
                                     {"password": True}, {"pass": PASSWORD}])
def test_setup_password_must_be_a_string(client, payload):
    response = post(client, AUTH + "/password/setup", payload)
    assert error(response) == (422, "validation_error")
    assert response.get_json()["error"]["message"].startswith("password ")


# -- POST /password/login ----------------------------------------------------------------

def test_login_without_a_password_configured(client):
    response = login(client)
    assert error(response) == (400, "password_not_configured")


def test_login_with_a_wrong_password(app, authed):
    client = app.test_client()
    response = login(client, "not the password")
    assert error(response) == (401, "invalid_credentials")
    assert "Set-Cookie" not in response.headers
    assert state(client) == SIGNED_OUT


@pytest.mark.parametrize("payload", [{}, {"password": 1}, {"password": [PASSWORD]}])
def test_login_password_must_be_a_string(authed, payload):
    response = post(authed, AUTH + "/password/login", payload)
    assert error(response) == (422, "validation_error")
    assert response.get_json()["error"]["message"].startswith("password ")


# -- POST /password/change and DELETE /password -----------------------------------------

def test_password_change_ends_every_other_session(app, authed):
    other = app.test_client()
    assert login(other).status_code == 200
    response = change(authed)
    assert ok(response) == {"status": "ok"}
    assert authed.get(DASHBOARD[0]).status_code == 200
    assert state(authed) == SIGNED_IN
    assert denied(other.get(DASHBOARD[0])) == AUTH_REQUIRED
    assert error(login(app.test_client())) == (401, "invalid_credentials")
    assert ok(login(app.test_client(), NEW_PASSWORD)) == SIGNED_IN


def test_password_change_with_a_wrong_current_password(app, authed):
    other = app.test_client()
    login(other)
    assert error(change(authed, current="not the password")) == (401, "invalid_credentials")
    assert state(other) == SIGNED_IN
    assert login(app.test_client()).status_code == 200


@pytest.mark.parametrize("payload, field", [
    ({"currentPassword": PASSWORD}, "newPassword"),
    ({"currentPassword": PASSWORD, "newPassword": "p" * 7}, "newPassword"),
    ({"currentPassword": PASSWORD, "newPassword": "p" * 257}, "newPassword"),
    ({"currentPassword": PASSWORD, "newPassword": 12345678}, "newPassword"),
    ({"newPassword": NEW_PASSWORD}, "currentPassword"),
    ({"currentPassword": 1, "newPassword": NEW_PASSWORD}, "currentPassword"),
])
def test_password_change_validation(authed, payload, field):
    response = post(authed, AUTH + "/password/change", payload)
    assert names_field(response, field)


def test_password_removal_ends_all_sessions_and_clears_the_cookie(app, authed):
    remote = app.test_client()
    assert post(remote, AUTH + "/password/login", {"password": PASSWORD}, environ_base=REMOTE).status_code == 200
    saved = token(authed)
    response = remove(authed)
    assert ok(response) == {"status": "ok"}
    assert_cleared(response)
    assert authed.get_cookie(COOKIE) is None
    assert state(authed) == dict(NO_PASSWORD, authenticated=True)
    assert denied(remote.get(DASHBOARD[0], environ_base=REMOTE)) == AUTH_REQUIRED
    # Under a new password, neither old token comes back to life.
    setup_password(app.test_client(), NEW_PASSWORD)
    assert state(with_cookie(app, saved)) == SIGNED_OUT
    assert state(remote, environ_base=REMOTE) == SIGNED_OUT


def test_password_removal_with_a_wrong_password(authed):
    assert error(remove(authed, "not the password")) == (401, "invalid_credentials")
    assert state(authed) == SIGNED_IN


# -- the recovery command ----------------------------------------------------------------------

def test_reset_auth_command_removes_password_totp_and_sessions(app, authed, clock):
    enable_totp(authed, clock)
    saved = token(authed)
    result = app.test_cli_runner().invoke(args=["reset-auth"])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    assert state(authed) == dict(NO_PASSWORD, authenticated=True)
    setup_password(app.test_client(), NEW_PASSWORD)
    assert state(with_cookie(app, saved)) == SIGNED_OUT  # TOTP gone, the old session too
    assert ok(login(app.test_client(), NEW_PASSWORD)) == SIGNED_IN
