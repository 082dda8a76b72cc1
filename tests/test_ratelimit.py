"""lb.ratelimit: failed attempts counted per client address, in the database.

Eight failures within 60 s block every password attempt from that address (the right
password too) with 429 and a Retry-After counting down to the oldest failure leaving
the window. The count is per address (the forwarded one behind a trusted proxy) and
survives a restart. TOTP failures count too: see test_totp.py.
"""
import pytest

from helpers import (
    AUTH, PASSWORD, REMOTE, SIGNED_IN, assert_limited, change, error, login, ok, post, remove, setup_password, state,
)


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
