"""lb.ratelimit: failed attempts counted per client address, in the database.

Eight failures within 60 s block every password attempt from that address (the right
password too) with 429 and a Retry-After counting down to the oldest failure leaving
the window. The count is per address (the forwarded one behind a trusted proxy) and
survives a restart. TOTP failures count too: see test_totp.py. An attempt is counted
before its slow check, so 64 parallel guesses at the real server get 8 checks, and a
clock stepped back never stretches the lock-out past the window.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from helpers.data import PASSWORD
from helpers.http import (
    AUTH, REMOTE, SIGNED_IN, assert_limited, change, error, login, ok, post, remove, setup_password, state
)
from helpers.servers import call, call_with_cookie


WRONG_ATTEMPTS = {
    "login": lambda client: login(client, "not the password"),
    "change": lambda client: change(client, current="not the password"),
    "remove": lambda client: remove(client, "not the password"),
}


def fail_logins(client, times, **kwargs):
    for _ in range(times):
        response = post(client, AUTH + "/password/login", {"password": "not the password"}, **kwargs)
        assert error(response) == (401, "invalid_credentials")


@pytest.mark.parametrize("kind", WRONG_ATTEMPTS)
def test_eight_wrong_passwords_block_every_attempt(authed, kind):
    for _ in range(8):
        assert error(WRONG_ATTEMPTS[kind](authed)) == (401, "invalid_credentials")
    assert_limited(WRONG_ATTEMPTS[kind](authed), 60)
    assert_limited(login(authed), 60)  # the right password too
    assert_limited(change(authed), 60)
    assert_limited(remove(authed), 60)
    assert state(authed) == SIGNED_IN  # a 429 changes nothing


def test_retry_after_counts_down_to_the_oldest_failure_leaving_the_window(authed, clock):
    for _ in range(8):
        fail_logins(authed, 1)
        clock.advance(5)  # failures at 0, 5, ..., 35 s; now 40 s
    assert_limited(login(authed), 20)
    clock.advance(0.5)
    assert_limited(login(authed), 20)  # 19.5 s, rounded up
    clock.advance(18.5)
    assert_limited(login(authed), 1)
    clock.advance(0.9)
    assert_limited(login(authed), 1)
    # At 60 s the oldest failure leaves the window; had the 429s counted, it would not reopen.
    clock.advance(0.1)
    assert ok(login(authed)) == dict(SIGNED_IN, expiresAt="2026-11-25T19:01:00Z")
    # Seven failures remain inside the window: one more closes it again until the next one ages out.
    fail_logins(authed, 1)
    assert_limited(login(authed), 5)


def test_rate_limit_is_per_client_address(app, authed):
    fail_logins(authed, 8)
    assert_limited(login(authed), 60)
    remote = app.test_client()
    response = post(remote, AUTH + "/password/login", {"password": PASSWORD}, environ_base=REMOTE)
    assert ok(response) == SIGNED_IN


def test_rate_limit_behind_a_trusted_proxy_uses_the_forwarded_address(make_app):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    setup_password(client)
    fail_logins(client, 8, headers={"X-Forwarded-For": "198.51.100.7"})
    assert_limited(post(client, AUTH + "/password/login", {"password": PASSWORD},
                        headers={"X-Forwarded-For": "198.51.100.7"}), 60)
    assert ok(login(client)) == SIGNED_IN


def test_failure_counter_survives_a_restart(make_app, authed):
    fail_logins(authed, 8)
    restarted = make_app().test_client()
    assert_limited(login(restarted), 60)


# -- a clock stepped back ------------------------------------------------------------------

def test_a_clock_stepped_back_an_hour_never_locks_out_for_longer_than_the_window(authed, clock):
    fail_logins(authed, 8)
    clock.advance(-3600)  # the failures now lie an hour in the future: they count as now
    assert_limited(login(authed), 60)
    clock.advance(59)
    assert_limited(login(authed), 1)
    clock.advance(1)
    assert ok(login(authed))["authenticated"] is True


# -- parallel guesses at the real server -------------------------------------------------------

def wrong_code(secret):
    """A six-digit code that no step of the accepted window (now, and one either side) gives."""
    totp, now = pyotp.TOTP(secret), time.time()
    window = {totp.at(now + offset) for offset in (-60, -30, 0, 30, 60)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in window)


def _parallel(port, requests):
    """Fire ``requests`` ((method, path, payload, headers) each) at once; their statuses."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return [status for status, _ in pool.map(lambda r: call(port, *r), requests)]


def test_64_parallel_wrong_passwords_get_8_checks_and_56_refusals(server):
    assert call(server.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})[0] == 200
    statuses = _parallel(server.port, [("POST", AUTH + "/password/login", {"password": f"wrong {i}"}, None)
                                       for i in range(64)])
    assert sorted(statuses) == [401] * 8 + [429] * 56


def test_64_parallel_wrong_totp_codes_get_8_checks_and_56_refusals(server):
    status, _, cookie = call_with_cookie(server.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})
    assert status == 200
    started = call(server.port, "POST", AUTH + "/totp/setup/start", headers=cookie)[1]
    code = pyotp.TOTP(started["secret"]).now()
    assert call(server.port, "POST", AUTH + "/totp/setup/confirm", {"setupToken": started["setupToken"],
                                                                     "code": code}, cookie)[0] == 200
    status, body, pending = call_with_cookie(server.port, "POST", AUTH + "/password/login", {"password": PASSWORD})
    assert status == 200 and body["authenticated"] is False and body["isPasswordVerified"] is True
    wrong = wrong_code(started["secret"])
    statuses = _parallel(server.port, [("POST", AUTH + "/totp/verify", {"code": wrong}, pending)] * 64)
    assert sorted(statuses) == [400] * 8 + [429] * 56
