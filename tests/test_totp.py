"""lb.totp: TOTP setup, verify, disable, the replay guard, and TOTP failures in the rate limit.

A session that owes its TOTP code is refused by the guard with totp_required (here
for every endpoint it reaches; the guard itself is in test_auth.py).
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from helpers.data import PASSWORD
from helpers.http import (
    AUTH, AUTH_REQUIRED, DASHBOARD, EXPIRES, TOTP_REQUIRED, assert_limited, denied, enable_totp, error, login, ok,
    post, remove, session_cookie, setup_password, state, token, with_cookie
)

STEP = 30
LATER = "2026-11-25T19:00:30Z"  # the expiry of a login one step later

VERIFIED = {"isPasswordConfigured": True, "isPasswordVerified": True, "isTotpConfigured": True,
            "isTotpVerified": True, "isTotpRequiredOnLogin": True, "authenticated": True, "expiresAt": EXPIRES}
PENDING = dict(VERIFIED, isTotpVerified=False, authenticated=False)
SIGNED_OUT = dict(PENDING, isPasswordVerified=False, expiresAt=None)
WITHOUT_TOTP = dict(VERIFIED, isTotpConfigured=False, isTotpVerified=False, isTotpRequiredOnLogin=False)


def code_at(secret, clock, offset=0):
    return pyotp.TOTP(secret).at(clock() + offset)


def start(client):
    response = post(client, AUTH + "/totp/setup/start")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def confirm(client, setup_token, code):
    return post(client, AUTH + "/totp/setup/confirm", {"setupToken": setup_token, "code": code})


def verify(client, code):
    return post(client, AUTH + "/totp/verify", {"code": code})


def disable(client, code):
    return post(client, AUTH + "/totp/disable", {"code": code})


@pytest.fixture
def secret(authed, clock):
    """TOTP enabled by ``authed`` (which stays fully verified); the clock moved to the next step."""
    value = enable_totp(authed, clock)
    clock.advance(STEP)  # the confirm used the first step's code
    return value


@pytest.fixture
def pending_secret(authed, clock):
    """TOTP enabled, then ``authed`` logged in again: password verified, TOTP owed. Returns the secret."""
    value = enable_totp(authed, clock)
    assert ok(login(authed)) == PENDING
    clock.advance(STEP)
    return value


# -- setup ---------------------------------------------------------------------------------

def test_setup_start_answers_the_secret_and_its_renderings(authed):
    setup = start(authed)
    assert set(setup) == {"secret", "otpauthUri", "qrSvgDataUri", "setupToken"}
    assert re.fullmatch(r"[A-Z2-7]{16,}", setup["secret"])
    assert setup["otpauthUri"].startswith("otpauth://totp/")
    parsed = pyotp.parse_uri(setup["otpauthUri"])
    assert parsed.issuer == "Codex-LB" and parsed.secret == setup["secret"]
    assert parsed.digits == 6 and parsed.interval == STEP
    assert setup["qrSvgDataUri"].startswith("data:image/svg+xml")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", setup["setupToken"])
    assert state(authed) == WITHOUT_TOTP  # nothing changes before the confirm


def test_setup_confirm_enables_totp_and_verifies_this_session(app, authed, clock):
    setup = start(authed)
    response = confirm(authed, setup["setupToken"], code_at(setup["secret"], clock))
    assert ok(response) == VERIFIED
    assert state(authed) == VERIFIED
    assert authed.get(DASHBOARD[0]).status_code == 200
    # From now on a login owes the second factor.
    other = app.test_client()
    assert ok(login(other)) == PENDING
    assert state(other) == PENDING


def test_setup_confirm_with_a_wrong_code(authed, clock):
    setup = start(authed)
    wrong = code_at(setup["secret"], clock, 10 * STEP)
    response = confirm(authed, setup["setupToken"], wrong)
    assert error(response) == (400, "invalid_totp_code")
    assert state(authed) == WITHOUT_TOTP
    # A wrong code does not use the setup up.
    response = confirm(authed, setup["setupToken"], code_at(setup["secret"], clock))
    assert ok(response) == VERIFIED


def unknown_token(app, client, clock):
    return "no-such-setup-token", start(client)["secret"]


def used_token(app, client, clock):
    setup = start(client)
    assert confirm(client, setup["setupToken"], code_at(setup["secret"], clock)).status_code == 200
    clock.advance(STEP)
    assert disable(client, code_at(setup["secret"], clock)).status_code == 200
    return setup["setupToken"], setup["secret"]


def expired_token(app, client, clock):
    setup = start(client)
    clock.advance(10 * 60 + 1)
    return setup["setupToken"], setup["secret"]


def other_sessions_token(app, client, clock):
    other = app.test_client()
    login(other)
    setup = start(other)
    return setup["setupToken"], setup["secret"]


@pytest.mark.parametrize("make_token", [unknown_token, used_token, expired_token, other_sessions_token])
def test_setup_confirm_refuses_a_bad_setup_token(app, authed, clock, make_token):
    setup_token, secret = make_token(app, authed, clock)
    response = confirm(authed, setup_token, code_at(secret, clock))
    assert error(response) == (400, "invalid_setup_token")
    assert state(authed) == WITHOUT_TOTP


def test_setup_token_lasts_just_under_10_minutes(authed, clock):
    setup = start(authed)
    clock.advance(10 * 60 - 1)
    response = confirm(authed, setup["setupToken"], code_at(setup["secret"], clock))
    assert ok(response) == VERIFIED


def test_setup_start_when_totp_is_configured(authed, secret):
    response = post(authed, AUTH + "/totp/setup/start")
    assert error(response) == (409, "totp_already_configured")


def test_two_sessions_confirming_at_once_enable_one_secret_and_the_other_gets_409(app, authed, clock):
    other = app.test_client()
    assert ok(login(other))["authenticated"] is True
    for _ in range(12):
        clients = (authed, other)
        setups = [start(client) for client in clients]
        barrier = threading.Barrier(2)

        def confirm_at_once(client, setup):
            code = code_at(setup["secret"], clock)
            barrier.wait()
            return confirm(client, setup["setupToken"], code)

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(confirm_at_once, clients, setups))
        assert sorted(r.status_code for r in responses).count(200) == 1  # never two secrets
        winner = 0 if responses[0].status_code == 200 else 1
        # The loser is refused either way: 409 when it got past the guard first, else its session,
        # like every other, now owes the winner's TOTP code (the old race gave both a 200).
        assert error(responses[1 - winner]) in ((409, "totp_already_configured"), (401, "totp_required"))
        # The winner's authenticator is the one stored: its next code turns TOTP off again.
        clock.advance(STEP)
        assert ok(disable(clients[winner], code_at(setups[winner]["secret"], clock))) == {"status": "ok"}


def test_enabling_totp_makes_other_sessions_pending_without_ending_them(app, authed, clock):
    other = app.test_client()
    login(other)
    secret = enable_totp(authed, clock)
    for path in DASHBOARD:
        response = other.get(path)
        assert denied(response) == TOTP_REQUIRED
    assert state(other) == PENDING
    clock.advance(STEP)
    assert ok(verify(other, code_at(secret, clock))) == VERIFIED
    assert other.get(DASHBOARD[0]).status_code == 200


def test_re_enabling_totp_makes_sessions_verified_under_the_old_secret_pending(app, authed, clock, secret):
    other = app.test_client()
    login(other)
    assert verify(other, code_at(secret, clock)).status_code == 200
    clock.advance(STEP)
    assert disable(authed, code_at(secret, clock)).status_code == 200
    enable_totp(authed, clock)
    assert denied(other.get(DASHBOARD[0])) == TOTP_REQUIRED
    assert state(other) == dict(PENDING, expiresAt=LATER)
    assert state(authed) == VERIFIED


# -- a TOTP-pending session ---------------------------------------------------------------------

@pytest.mark.parametrize("method, path, payload", [
    ("GET", "/api/dashboard/overview", None),
    ("GET", "/api/models", None),
    ("POST", AUTH + "/password/change", {"currentPassword": PASSWORD, "newPassword": "another password"}),
    ("DELETE", AUTH + "/password", {"password": PASSWORD}),
    ("POST", AUTH + "/totp/setup/start", None),
    ("POST", AUTH + "/totp/setup/confirm", {"setupToken": "token", "code": "123456"}),
    ("POST", AUTH + "/totp/disable", {"code": "123456"}),
])
def test_pending_session_gets_totp_required(authed, pending_secret, method, path, payload):
    response = authed.open(path, method=method, json=payload)
    assert denied(response) == TOTP_REQUIRED
    assert state(authed) == PENDING


# -- POST /totp/verify ----------------------------------------------------------------------------

@pytest.mark.parametrize("spell", [
    lambda code: code,
    lambda code: f"{code[:3]} {code[3:]}",
    lambda code: f"{code[:3]}-{code[3:]}",
    lambda code: " " + "-".join(code) + " ",
], ids=["plain", "space", "dash", "mixed"])
def test_verify_ignores_spaces_and_dashes(authed, clock, pending_secret, spell):
    response = verify(authed, spell(code_at(pending_secret, clock)))
    assert ok(response) == VERIFIED
    assert state(authed) == VERIFIED
    assert authed.get(DASHBOARD[0]).status_code == 200


def test_verify_rotates_the_token_and_keeps_the_expiry(app, authed, clock, pending_secret):
    clock.advance(3600)  # now 1 h 30 s after login
    old = token(authed)
    response = verify(authed, code_at(pending_secret, clock))
    assert ok(response) == VERIFIED
    assert session_cookie(response)[1]["max-age"] == str(12 * 3600 - 3600 - STEP)
    assert token(authed) != old and re.fullmatch(r"[A-Za-z0-9_-]{43,}", token(authed))
    copy = with_cookie(app, old)
    assert denied(copy.get(DASHBOARD[0])) == AUTH_REQUIRED
    assert state(copy) == SIGNED_OUT
    clock.advance(12 * 3600 - 3600 - STEP)
    assert denied(authed.get(DASHBOARD[0])) == AUTH_REQUIRED


@pytest.mark.parametrize("offset, accepted", [(-STEP, True), (STEP, True), (-2 * STEP, False), (2 * STEP, False)])
def test_verify_window_is_one_step_either_side(authed, clock, pending_secret, offset, accepted):
    clock.advance(3 * STEP)  # keep clear of the step used at setup
    response = verify(authed, code_at(pending_secret, clock, offset))
    if accepted:
        assert ok(response) == VERIFIED
    else:
        assert error(response) == (400, "invalid_totp_code")
        assert state(authed) == PENDING


def test_a_code_is_accepted_only_once(authed, clock, pending_secret):
    code = code_at(pending_secret, clock)
    assert verify(authed, code).status_code == 200
    assert ok(login(authed)) == dict(PENDING, expiresAt=LATER)
    assert error(verify(authed, code)) == (400, "invalid_totp_code")
    assert state(authed) == dict(PENDING, expiresAt=LATER)
    clock.advance(STEP)
    assert ok(verify(authed, code_at(pending_secret, clock))) == dict(VERIFIED, expiresAt=LATER)


def test_the_setup_code_cannot_be_replayed(app, authed, clock):
    secret = enable_totp(authed, clock)
    other = app.test_client()
    login(other)
    assert error(verify(other, code_at(secret, clock))) == (400, "invalid_totp_code")


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "", "١٢٣٤٥٦", "12345６"],
                         ids=["short", "long", "letters", "empty", "arabic-indic", "fullwidth"])
def test_verify_refuses_malformed_codes(authed, pending_secret, code):
    assert error(verify(authed, code)) == (400, "invalid_totp_code")


@pytest.mark.parametrize("payload", [{}, {"code": 123456}, {"code": None}, {"code": ["123456"]}])
def test_verify_code_must_be_a_string(authed, pending_secret, payload):
    response = post(authed, AUTH + "/totp/verify", payload)
    assert error(response) == (422, "validation_error")
    assert response.get_json()["error"]["message"].startswith("code ")


def test_verify_without_a_session(app, clock, pending_secret):
    response = verify(app.test_client(), code_at(pending_secret, clock))
    assert denied(response) == AUTH_REQUIRED


def test_verify_with_an_expired_session(authed, clock, pending_secret):
    clock.advance(12 * 3600)
    response = verify(authed, code_at(pending_secret, clock))
    assert denied(response) == AUTH_REQUIRED


@pytest.mark.parametrize("path", ["/totp/verify", "/totp/disable"])
def test_verify_and_disable_without_totp(authed, path):
    response = post(authed, AUTH + path, {"code": "123456"})
    assert error(response) == (400, "totp_not_configured")


# -- POST /totp/disable and DELETE /password ----------------------------------------------------------

def test_disable_with_a_valid_code(app, authed, clock, secret):
    response = disable(authed, code_at(secret, clock))
    assert ok(response) == {"status": "ok"}
    assert state(authed) == WITHOUT_TOTP
    assert ok(login(app.test_client())) == dict(WITHOUT_TOTP, expiresAt=LATER)


@pytest.mark.parametrize("when", [-STEP, 10 * STEP], ids=["replayed", "wrong"])
def test_disable_with_a_bad_code(authed, clock, secret, when):
    response = disable(authed, code_at(secret, clock, when))  # -STEP is the code used at setup
    assert error(response) == (400, "invalid_totp_code")
    assert state(authed) == VERIFIED


def test_password_removal_removes_totp(app, authed, secret):
    response = remove(authed)
    assert ok(response) == {"status": "ok"}
    assert state(authed)["isTotpConfigured"] is False
    fresh = app.test_client()
    setup_password(fresh)
    assert ok(login(fresh)) == dict(WITHOUT_TOTP, expiresAt=LATER)


# -- the rate limit --------------------------------------------------------------------------------

def test_wrong_and_replayed_codes_count_as_failures(authed, clock, pending_secret):
    used = code_at(pending_secret, clock)
    assert verify(authed, used).status_code == 200
    login(authed)
    assert error(verify(authed, used)) == (400, "invalid_totp_code")
    for _ in range(7):
        assert error(verify(authed, code_at(pending_secret, clock, 10 * STEP))) == (400, "invalid_totp_code")
    clock.advance(STEP)
    for response in (verify(authed, code_at(pending_secret, clock)), login(authed)):
        assert_limited(response, 60 - STEP)
    assert state(authed) == dict(PENDING, expiresAt=LATER)


def test_unknown_setup_tokens_count_as_failures(authed, clock):
    setup = start(authed)
    for _ in range(8):
        response = confirm(authed, "no-such-setup-token", code_at(setup["secret"], clock))
        assert error(response) == (400, "invalid_setup_token")
    for response in (confirm(authed, setup["setupToken"], code_at(setup["secret"], clock)), login(authed)):
        assert_limited(response, 60)
    assert state(authed) == WITHOUT_TOTP
