"""lb.refresh: account tokens kept fresh against a fake token endpoint (tests/fixtureapps/token_server.py).

fresh_credentials refreshes an access token that expires within 5 minutes (or
whose expiry is unreadable, 8 days after the last refresh, or when forced):
one call per account however many threads or instances ask; the answer's
tokens replace the stored ones (a missing one is kept) and the email and plan
are read again; a permanent failure deactivates the account, a transient one
leaves it alone.
"""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from fixtureapps.token_server import Answer
from helpers.data import (
    ACCESS_1, ACCESS_2, DAY_S, ID_1, ID_2, NOW, NOW_MS, REFRESH_1, REFRESH_2, access_token, auth_json, fresh,
    id_token, jwt, new_tokens, refresh_fails, row, stored_tokens, write
)
from helpers.http import ACCOUNTS, create_account, imported, listed, ok, setup_password
from helpers.servers import free_port

from lb import crypto, refresh
from lb.tables import db


pytestmark = pytest.mark.uses_token_server


# -- when a refresh happens ------------------------------------------------------------------------

@pytest.mark.parametrize("expires_in, refreshed", [
    (-3600, True), (0, True), (299, True), (300, False), (3600, False), (30 * DAY_S, False)])
def test_an_access_token_is_refreshed_within_five_minutes_of_its_exp(authed, app, clock, token_server,
                                                                      expires_in, refreshed):
    account = imported(authed, access=access_token(expires_in))
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2))
    got = fresh(app, account["id"], clock)
    assert got == refresh.Credentials(ACCESS_2 if refreshed else access_token(expires_in), "ws-personal")
    assert len(token_server.requests) == (1 if refreshed else 0)
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}"))["lastRefreshAt"] == (NOW if refreshed
                                                                            else "2026-11-20T06:00:00Z")


UNREADABLE = {"opaque": "opaque-access-token", "no exp": jwt({"sub": "no exp"}),
              "exp a string": jwt({"exp": "tomorrow"}), "exp a boolean": jwt({"exp": True})}


@pytest.mark.parametrize("access", UNREADABLE.values(), ids=UNREADABLE.keys())
@pytest.mark.parametrize("age_s, refreshed", [(8 * DAY_S, True), (30 * DAY_S, True), (8 * DAY_S - 1, False),
                                              (0, False)])
def test_an_unreadable_expiry_refreshes_eight_days_after_the_last_refresh(authed, app, clock, token_server,
                                                                          access, age_s, refreshed):
    account = imported(authed, access=access, last_refresh=None)  # refreshed now
    clock.advance(age_s)
    token_server.answer(new_tokens(access_token="opaque-access-token-2"))
    assert fresh(app, account["id"], clock).access_token == ("opaque-access-token-2" if refreshed else access)
    assert len(token_server.requests) == (1 if refreshed else 0)


def test_force_refreshes_a_token_far_from_its_expiry(authed, app, clock, token_server):
    account = imported(authed, access=access_token(30 * DAY_S))
    token_server.answer(new_tokens(access_token=ACCESS_2))
    assert fresh(app, account["id"], clock, force=True) == (ACCESS_2, "ws-personal")
    assert len(token_server.requests) == 1


def after_401(app, account_id, rejected):
    """fresh_credentials as the proxy calls it once the upstream refused ``rejected``."""
    with app.app_context(), db.connection_context():
        return refresh.fresh_credentials(account_id, NOW_MS, rejected=rejected)


def test_a_401_on_a_token_another_instance_replaced_takes_its_tokens(authed, app, clock, token_server):
    account = imported(authed)
    fernet = app.extensions["lb_fernet"]  # another instance got the same 401 and refreshed first
    write(app, account["id"], access_token=crypto.seal(ACCESS_2, fernet), refresh_token=crypto.seal(REFRESH_2, fernet))
    token_server.answer(new_tokens(access_token="third"))
    assert after_401(app, account["id"], ACCESS_1) == (ACCESS_2, "ws-personal")
    assert token_server.requests == []
    assert after_401(app, account["id"], ACCESS_2) == ("third", "ws-personal")  # the stored token refused: refreshed
    assert [body["refresh_token"] for body in token_server.bodies] == [REFRESH_2]


def test_two_401s_on_the_same_token_make_one_refresh(authed, app, clock, token_server):
    account = imported(authed)
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2), new_tokens(access_token="third"))
    assert after_401(app, account["id"], ACCESS_1) == (ACCESS_2, "ws-personal")
    assert after_401(app, account["id"], ACCESS_1) == (ACCESS_2, "ws-personal")  # another thread's 401, answered late
    assert [body["refresh_token"] for body in token_server.bodies] == [REFRESH_1]
    assert stored_tokens(app, account["id"])[1:] == (ACCESS_2, REFRESH_2)


@pytest.mark.parametrize("overrides, client_id", [({}, "app_EMoamEEZ73f0CkXaXp7hrann"),
                                                  ({"OAUTH_CLIENT_ID": "app_test_client"}, "app_test_client")])
def test_the_token_endpoint_gets_the_refresh_request(make_app, token_server, clock, overrides, client_id):
    app = make_app(OAUTH_TOKEN_URL=token_server.url, **overrides)
    client = app.test_client()
    setup_password(client)
    account = imported(client)
    token_server.answer(new_tokens(access_token=ACCESS_2))
    fresh(app, account["id"], clock, force=True)
    [(path, body, headers)] = token_server.requests
    assert path == "/oauth/token"
    assert headers["Content-Type"] == "application/json"
    assert body == {"client_id": client_id, "grant_type": "refresh_token", "refresh_token": REFRESH_1,
                    "scope": "openid profile email"}


# -- what a refresh stores ------------------------------------------------------------------------

REPLACEMENTS = [
    ("all three", {"id_token": ID_2, "access_token": ACCESS_2, "refresh_token": REFRESH_2},
     (ID_2, ACCESS_2, REFRESH_2)),
    ("access only", {"access_token": ACCESS_2}, (ID_1, ACCESS_2, REFRESH_1)),
    ("no refresh token", {"id_token": ID_2, "access_token": ACCESS_2}, (ID_2, ACCESS_2, REFRESH_1)),
    ("refresh only", {"refresh_token": REFRESH_2}, (ID_1, ACCESS_1, REFRESH_2)),
    ("empty and odd values are no tokens", {"access_token": ACCESS_2, "refresh_token": "", "id_token": 5},
     (ID_1, ACCESS_2, REFRESH_1)),
]


@pytest.mark.parametrize("answer, expected", [r[1:] for r in REPLACEMENTS], ids=[r[0] for r in REPLACEMENTS])
def test_the_answers_tokens_replace_the_stored_ones_and_a_missing_one_is_kept(authed, app, clock, token_server,
                                                                              answer, expected):
    account = imported(authed)
    clock.advance(60)
    token_server.answer(new_tokens(**answer), new_tokens(access_token="third"))
    assert fresh(app, account["id"], clock, force=True) == (expected[1], "ws-personal")
    assert stored_tokens(app, account["id"]) == expected
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}"))["lastRefreshAt"] == "2026-11-25T07:01:00Z"
    fresh(app, account["id"], clock, force=True)
    assert [body["refresh_token"] for body in token_server.bodies] == [REFRESH_1, expected[2]]


def test_email_and_plan_are_read_again_from_a_new_id_token(authed, app, clock, token_server):
    account = imported(authed)
    clock.advance(60)
    token_server.answer(new_tokens(id_token=ID_2, access_token=ACCESS_2),
                        new_tokens(id_token=id_token(email=None, plan="team"), access_token="third"),
                        new_tokens(id_token=id_token(email="Ann@Example.com", plan=None), access_token="fourth"))
    fresh(app, account["id"], clock, force=True)
    expected = {**account, "email": "Ann@Example.com", "planType": "pro", "updatedAt": "2026-11-25T07:01:00Z",
                "lastRefreshAt": "2026-11-25T07:01:00Z"}
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == expected
    clock.advance(60)
    fresh(app, account["id"], clock, force=True)  # an id_token without an email changes neither
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == {**expected, "lastRefreshAt": "2026-11-25T07:02:00Z"}
    clock.advance(60)
    fresh(app, account["id"], clock, force=True)  # one without a plan claim: no plan
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == {**expected, "planType": None,
                                                             "updatedAt": "2026-11-25T07:03:00Z",
                                                             "lastRefreshAt": "2026-11-25T07:03:00Z"}


def test_a_new_email_that_another_account_of_the_workspace_has_is_not_taken(authed, app, clock, token_server):
    imported(authed)
    clock.advance(1)
    bob = imported(authed, auth_json(id_token(email="bob@example.com"), refresh="rt_bob"))
    token_server.answer(new_tokens(id_token=id_token(email="ANN@example.com", plan="pro"), access_token=ACCESS_2))
    assert fresh(app, bob["id"], clock, force=True) == (ACCESS_2, "ws-personal")
    after = ok(authed.get(f"{ACCOUNTS}/{bob['id']}"))
    expected = ("bob@example.com", "pro", "2026-11-25T07:00:01Z")
    assert (after["email"], after["planType"], after["lastRefreshAt"]) == expected
    assert [a["email"] for a in listed(authed)] == ["ann@example.com", "bob@example.com"]


def test_a_manual_or_unknown_account_has_no_credentials(authed, app, clock, token_server):
    manual = create_account(authed)
    failure = refresh_fails(app, manual["id"], clock, force=False)
    assert (failure.code, failure.permanent) == ("no_credentials", False)
    failure = refresh_fails(app, "acc_unknown", clock, force=False)  # no token to reject
    assert (failure.code, failure.permanent) == ("account_not_found", False)
    assert listed(authed) == [manual] and token_server.requests == []


# -- one refresh at a time -----------------------------------------------------------------------

@contextlib.contextmanager
def threads(workers, gate):
    """A thread pool whose calls may wait on ``gate``; opened on the way out, pass or fail, so they end."""
    with ThreadPoolExecutor(workers) as pool:
        try:
            yield pool
        finally:
            gate.set()


def held_at_the_endpoint(call, times, gate, token_server):
    """``call()`` from ``times`` threads at once while the token endpoint holds its answer until all have
    arrived; their results."""
    with threads(times, gate) as pool:
        futures = [pool.submit(call) for _ in range(times)]
        assert token_server.arrived.wait(10)
        gate.set()
        return [future.result(timeout=10) for future in futures]


def test_two_threads_refreshing_at_once_make_one_call(authed, app, clock, token_server):
    account = imported(authed, access=access_token(60))
    gate = threading.Event()
    token_server.answer(Answer(200, {"access_token": ACCESS_2, "refresh_token": REFRESH_2}, gate=gate))
    barrier = threading.Barrier(2)

    def ask():
        barrier.wait(timeout=10)
        return fresh(app, account["id"], clock)

    assert held_at_the_endpoint(ask, 2, gate, token_server) == [(ACCESS_2, "ws-personal")] * 2
    assert len(token_server.requests) == 1
    assert stored_tokens(app, account["id"])[1:] == (ACCESS_2, REFRESH_2)


def test_stale_callers_reuse_the_refresh_another_did(authed, app, clock, token_server):
    account = imported(authed)
    old = row(app, account["id"])  # what the callers read: the first refresh token
    gate = threading.Event()
    token_server.answer(Answer(200, {"access_token": ACCESS_2, "refresh_token": REFRESH_2}, gate=gate))

    def stale():
        with app.app_context(), db.connection_context():
            return refresh.refresh(old, NOW_MS)

    assert held_at_the_endpoint(stale, 3, gate, token_server) == [(ACCESS_2, "ws-personal")] * 3
    assert stale() == (ACCESS_2, "ws-personal")  # long after: still no second call
    assert token_server.bodies == [{"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token",
                                    "refresh_token": REFRESH_1, "scope": "openid profile email"}]


@pytest.fixture
def polling(monkeypatch):
    """Set once a refresh waits for another instance's lease; the waits are short."""
    waiting = threading.Event()
    pause = refresh._pause

    def observed():
        waiting.set()
        pause()

    monkeypatch.setattr(refresh, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(refresh, "_pause", observed)
    return waiting


def test_a_refresh_under_another_instances_lease_waits_and_reuses_its_tokens(authed, app, clock, token_server,
                                                                             polling):
    account = imported(authed, access=access_token(60))
    write(app, account["id"], refresh_lease_until=NOW_MS + refresh.LEASE_MS)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fresh, app, account["id"], clock)
        assert polling.wait(10)
        fernet = app.extensions["lb_fernet"]  # the other instance stores its answer and lets the lease go
        write(app, account["id"], access_token=crypto.seal(ACCESS_2, fernet),
              refresh_token=crypto.seal(REFRESH_2, fernet), refresh_lease_until=None)
        assert future.result(timeout=10) == (ACCESS_2, "ws-personal")
    assert token_server.requests == []


@pytest.mark.parametrize("lease_ms, waits", [(-1, False), (100, True)])
def test_a_lapsed_lease_is_taken_over(authed, app, clock, token_server, polling, lease_ms, waits):
    account = imported(authed, access=access_token(60))
    write(app, account["id"], refresh_lease_until=NOW_MS + lease_ms)  # an instance that died mid-refresh
    token_server.answer(new_tokens(access_token=ACCESS_2, refresh_token=REFRESH_2))
    assert fresh(app, account["id"], clock) == (ACCESS_2, "ws-personal")
    assert polling.is_set() is waits
    assert len(token_server.requests) == 1
    assert row(app, account["id"]).refresh_lease_until is None


def test_a_lease_that_never_lapses_gives_up_as_transient(authed, app, clock, token_server, polling, monkeypatch):
    monkeypatch.setattr(refresh, "WAIT_MS", 50)
    account = imported(authed, access=access_token(60))
    write(app, account["id"], refresh_lease_until=NOW_MS + refresh.LEASE_MS)
    failure = refresh_fails(app, account["id"], clock, force=False)
    assert (failure.code, failure.permanent) == ("refresh_busy", False)
    assert token_server.requests == [] and ok(authed.get(f"{ACCOUNTS}/{account['id']}"))["status"] == "active"


def test_no_transaction_is_held_during_the_call(authed, app, clock, token_server):
    account = imported(authed)
    gate = threading.Event()
    token_server.answer(Answer(200, {"access_token": ACCESS_2, "refresh_token": REFRESH_2}, gate=gate))
    with threads(1, gate) as pool:
        future = pool.submit(fresh, app, account["id"], clock, True)
        assert token_server.arrived.wait(10)
        # The database takes another writer while the refresh waits for its answer.
        response = authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": "paused"})
        assert ok(response)["status"] == "paused"
        assert row(app, account["id"]).refresh_lease_until >= NOW_MS + refresh.LEASE_MS  # held meanwhile
        gate.set()
        assert future.result(timeout=10) == (ACCESS_2, "ws-personal")
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}"))["status"] == "paused"
    assert stored_tokens(app, account["id"])[1:] == (ACCESS_2, REFRESH_2)


# -- failures ---------------------------------------------------------------------------------------

PERMANENT = [
    (Answer(401, {}), "refresh_unauthorized"),
    (Answer(401, b"Unauthorized"), "refresh_unauthorized"),
    (Answer(401, {"error": {"code": "invalid_token"}}), "refresh_unauthorized"),
    (Answer(401, {"error": {"code": "refresh_token_expired"}}), "refresh_token_expired"),
    (Answer(400, {"error": {"code": "refresh_token_reused", "message": "already used"}}), "refresh_token_reused"),
    (Answer(400, {"error": "refresh_token_invalidated", "error_description": "revoked"}), "refresh_token_invalidated"),
    (Answer(400, {"code": "refresh_token_expired"}), "refresh_token_expired"),
]


@pytest.mark.parametrize("answer, reason", PERMANENT)
def test_a_permanent_failure_deactivates_the_account(authed, app, clock, token_server, answer, reason):
    account = imported(authed)
    clock.advance(60)
    token_server.answer(answer)
    failure = refresh_fails(app, account["id"], clock)
    assert (failure.code, failure.permanent) == (reason, True)
    after = ok(authed.get(f"{ACCOUNTS}/{account['id']}"))
    assert after == {**account, "status": "deactivated", "statusReason": reason, "updatedAt": "2026-11-25T07:01:00Z"}
    assert row(app, account["id"]).refresh_lease_until is None
    # Importing a fresh auth.json brings it back.
    assert imported(authed, status=200, refresh=REFRESH_2)["status"] == "active"


def test_a_permanent_failure_leaves_a_paused_account_paused(authed, app, clock, token_server):
    account = imported(authed)
    write(app, account["id"], status="paused")  # paused by the admin while a request was refreshing
    clock.advance(60)
    token_server.answer(Answer(401, {}))
    failure = refresh_fails(app, account["id"], clock)
    assert (failure.code, failure.permanent) == ("refresh_unauthorized", True)
    assert (row(app, account["id"]).status, row(app, account["id"]).refresh_lease_until) == ("paused", None)
    assert len(token_server.requests) == 1


TRANSIENT = [
    (Answer(500, {"error": "server_error"}), "server_error"),
    (Answer(500, b"<html>oops</html>"), "refresh_http_500"),
    (Answer(502, {}), "refresh_http_502"),
    (Answer(429, {"error": {"code": "rate_limit_exceeded"}}), "rate_limit_exceeded"),
    (Answer(400, {"error": {"code": "invalid_request"}}), "invalid_request"),
    (Answer(400, {"error": "invalid_grant"}), "invalid_grant"),
    (Answer(400, {"error": {"code": "a code\nwith a newline"}}), "refresh_http_400"),
    (Answer(200, b"not json"), "refresh_invalid_answer"),
    (Answer(200, ["access_token"]), "refresh_invalid_answer"),
]


@pytest.mark.parametrize("answer, code", TRANSIENT)
def test_a_transient_failure_raises_and_leaves_the_account_alone(authed, app, clock, token_server, answer, code):
    account = imported(authed, access=access_token(60))
    clock.advance(60)
    token_server.answer(answer, new_tokens(access_token=ACCESS_2))
    failure = refresh_fails(app, account["id"], clock, force=False)
    assert (failure.code, failure.permanent) == (code, False)
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == account
    assert stored_tokens(app, account["id"]) == (ID_1, access_token(60), REFRESH_1)
    assert row(app, account["id"]).refresh_lease_until is None
    assert fresh(app, account["id"], clock) == (ACCESS_2, "ws-personal")  # the next try goes ahead


def test_an_unreachable_token_endpoint_is_transient(make_app, clock):
    app = make_app(OAUTH_TOKEN_URL=f"http://127.0.0.1:{free_port()}/oauth/token")
    client = app.test_client()
    setup_password(client)
    account = imported(client)
    failure = refresh_fails(app, account["id"], clock)
    assert (failure.code, failure.permanent) == ("refresh_unreachable", False)
    assert ok(client.get(f"{ACCOUNTS}/{account['id']}")) == account


def test_a_token_endpoint_too_slow_to_answer_is_transient(authed, app, clock, token_server, monkeypatch):
    monkeypatch.setattr(refresh, "TIMEOUT", urllib3.Timeout(connect=5.0, read=0.2))
    account = imported(authed)
    token_server.answer(Answer(200, {"access_token": ACCESS_2}, gate=threading.Event()))  # never opened
    failure = refresh_fails(app, account["id"], clock)
    assert (failure.code, failure.permanent) == ("refresh_unreachable", False)
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == account
    assert stored_tokens(app, account["id"]) == (ID_1, ACCESS_1, REFRESH_1)


