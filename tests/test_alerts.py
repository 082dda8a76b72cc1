"""lb.alerts: the webhook's events, written once in the transaction of their change, sent by a background
sender with retries, never on a request's path; the settings that choose them, and the test event.

A fake receiver on loopback (the token server's scripted HTTP server) records each POST. The sender is
driven tick by tick on the test's clock, except where real servers run it on theirs."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtureapps.token_server import Answer, TokenServer
from fixtureapps.upstream import Fail
from helpers.data import NOW_MS, NOW_S, pool_account, row, stored_tokens
from helpers.http import AUTH_REQUIRED, ask, names_field, post
from helpers.servers import LOOPBACK_NOWHERE, app_server
from lb import accounts, alerts, keys, tables
from lb.tables import db

SETTINGS = "/api/settings"
TEST = "/api/settings/webhook-test"
USAGE_LIMIT = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                         "resets_at": NOW_S + 900}}


@pytest.fixture
def receiver():
    server = TokenServer()
    server.default = Answer(200, {"ok": True})
    server.start()
    yield server
    server.stop()


def hook(receiver):
    return receiver.base_url + "/hook"


def set_webhook(app, url, events=None):
    """Write the settings row directly, as the admin's PATCH (or another instance) would."""
    with app.app_context(), db.connection_context():
        tables.DashboardSettings.update(
            webhook_url=url, webhook_events=None if events is None else json.dumps(events)).execute()


def outbox(app):
    with app.app_context(), db.connection_context():
        return list(tables.Alert.select().order_by(tables.Alert.id))


def events(app):
    return [alert.event for alert in outbox(app)]


def change(app, account_id, now, admin=False, **columns):
    """An account's status change through the one door (lb.accounts.apply)."""
    with app.app_context(), db.connection_context():
        return accounts.apply(account_id, columns, now, admin=admin)


def send_all(app, clock):
    """Tick the sender until nothing is due now; the ids it sent."""
    sender, sent = app.extensions["lb_alerts"], []
    while (sent_id := sender.tick(int(clock() * 1000))) is not None:
        sent.append(sent_id)
    return sent


# -- settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://hooks.example.com/services/T0/B0/xyz",
                                 "http://[::1]:8080/a?b=c", "HTTPS://EXAMPLE.COM"])
def test_a_webhook_url_is_any_http_url_loopback_included(authed, url):
    answer = authed.patch(SETTINGS, json={"webhookUrl": url})
    assert answer.status_code == 200 and answer.get_json()["webhookUrl"] == url
    assert authed.patch(SETTINGS, json={"webhookUrl": None}).get_json()["webhookUrl"] is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/hook", "http://", "https:///path", 5, True,
                                 ["http://a.b"], "http://a.b/ x", "http://a.b/\n", "http://a.b:99999999/",
                                 "http://a.b/" + "x" * 2000, "javascript:alert(1)", ""])
def test_a_bad_webhook_url_is_422_and_changes_nothing(authed, url):
    authed.patch(SETTINGS, json={"webhookUrl": "http://127.0.0.1:9/kept"})
    answer = authed.patch(SETTINGS, json={"webhookUrl": url, "stickySessions": False})
    assert names_field(answer, "webhookUrl")
    kept = authed.get(SETTINGS).get_json()
    assert (kept["webhookUrl"], kept["stickySessions"]) == ("http://127.0.0.1:9/kept", True)


def test_webhook_events_are_a_subset_of_the_catalog_kept_in_its_order(authed):
    assert authed.get(SETTINGS).get_json()["webhookEvents"] == list(alerts.EVENTS)  # default: all
    chosen = ["pool.exhausted", "account.rate_limited", "pool.exhausted"]
    assert authed.patch(SETTINGS, json={"webhookEvents": chosen}).get_json()["webhookEvents"] == [
        "account.rate_limited", "pool.exhausted"]
    assert authed.patch(SETTINGS, json={"webhookEvents": []}).get_json()["webhookEvents"] == []
    for bad in (["pool.exploded"], "pool.exhausted", None, [1], [None], {"pool.exhausted": True}, ["test"]):
        answer = authed.patch(SETTINGS, json={"webhookEvents": bad})
        assert names_field(answer, "webhookEvents"), bad
    assert authed.get(SETTINGS).get_json()["webhookEvents"] == []


# -- the events, written in their change's transaction ---------------------------------------------

def test_nothing_is_written_without_a_webhook_url_or_for_an_event_not_chosen(app, clock):
    account = pool_account(app, clock, "a")
    change(app, account, NOW_MS, status="rate_limited", resets_at=NOW_MS + 1000)
    assert outbox(app) == []
    set_webhook(app, "http://127.0.0.1:9/hook", events=["account.deactivated"])
    change(app, account, NOW_MS + 1, status="active")
    assert outbox(app) == []  # account.recovered is not chosen
    change(app, account, NOW_MS + 2, status="deactivated", status_reason="refresh_token_reused")
    assert events(app) == ["account.deactivated"]


def test_each_account_event_carries_the_account(app, receiver, clock):
    set_webhook(app, hook(receiver))
    account = pool_account(app, clock, "a")
    span = alerts.ACCOUNT_SPAN_MS
    change(app, account, NOW_MS, status="rate_limited", resets_at=NOW_MS + 900_000, status_reason="usage limit")
    change(app, account, NOW_MS + 1, status="active", resets_at=None, status_reason=None)
    change(app, account, NOW_MS + span, status="deactivated", status_reason="refresh_token_reused")
    change(app, account, NOW_MS + span + 1, status="active", status_reason=None)  # an import, a sign-in
    clock.advance((span + 1) / 1000)
    assert len(send_all(app, clock)) == 4
    bodies = receiver.bodies
    assert [body["event"] for body in bodies] == ["account.rate_limited", "account.recovered",
                                                  "account.deactivated", "account.recovered"]
    limited = bodies[0]
    assert limited["account"] == {"id": account, "email": "a@example.com", "status": "rate_limited",
                                  "statusReason": "usage limit", "resetsAt": "2026-11-25T07:15:00Z"}
    assert limited["at"] == "2026-11-25T07:00:00Z" and "a@example.com" in limited["message"]
    assert limited["text"] == limited["content"] == "Codex-LB: " + limited["message"]
    assert "apiKey" not in limited
    assert bodies[2]["account"]["status"] == "deactivated" and bodies[2]["account"]["resetsAt"] is None
    assert [path for path, _, _ in receiver.requests] == ["/hook"] * 4
    assert all(headers["Content-Type"] == "application/json" for _, _, headers in receiver.requests)


def test_only_a_real_change_of_status_is_an_event(app, clock):
    set_webhook(app, "http://127.0.0.1:9/hook")
    account = pool_account(app, clock, "a")
    change(app, account, NOW_MS, status="active")  # active already
    change(app, account, NOW_MS, admin=True, status="paused")
    change(app, account, NOW_MS, status="rate_limited", resets_at=NOW_MS + 1000)  # a pause stays: not written
    change(app, account, NOW_MS, admin=True, status="active")  # the end of a pause is no recovery
    change(app, account, NOW_MS, last_used_at=NOW_MS)  # no status
    assert outbox(app) == []
    change(app, account, NOW_MS, status="quota_exceeded", resets_at=NOW_MS + 1000)
    change(app, account, NOW_MS, status="rate_limited", resets_at=NOW_MS + 2000)  # from one wait to another
    assert events(app) == ["account.rate_limited"]
    assert json.loads(outbox(app)[0].payload)["account"]["status"] == "quota_exceeded"


def test_a_failed_change_writes_no_event(app, clock):
    set_webhook(app, "http://127.0.0.1:9/hook")
    account = pool_account(app, clock, "a")
    with app.app_context(), db.connection_context():
        with pytest.raises(RuntimeError), db.atomic():
            accounts.apply(account, {"status": "deactivated"}, NOW_MS)
            raise RuntimeError("the rest of the change failed")
    assert outbox(app) == [] and row(app, account).status == "active"


def test_a_flapping_account_is_told_once_a_span_per_kind(app, receiver, clock):
    set_webhook(app, hook(receiver))
    account = pool_account(app, clock, "a")
    start = (NOW_MS // alerts.ACCOUNT_SPAN_MS) * alerts.ACCOUNT_SPAN_MS
    for i in range(10):  # limited and back, every 30 s
        change(app, account, start + i * 30_000, status="rate_limited", resets_at=start + 10**6)
        change(app, account, start + i * 30_000 + 1, status="active")
    assert events(app) == ["account.rate_limited", "account.recovered"]
    change(app, account, start + alerts.ACCOUNT_SPAN_MS, status="rate_limited", resets_at=start + 10**7)
    assert events(app) == ["account.rate_limited", "account.recovered", "account.rate_limited"]


@pytest.mark.uses_upstream
def test_the_proxy_tells_an_account_limit_and_the_pool_running_dry_then_back(app, client, clock, upstream, receiver):
    set_webhook(app, hook(receiver))
    a = pool_account(app, clock, "a")
    upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
    assert ask(client).status_code == 429  # a is now limited, and no other account can serve
    assert ask(client).status_code == 429  # refused again: no second pool.exhausted
    assert events(app) == ["account.rate_limited", "pool.exhausted"]
    send_all(app, clock)
    exhausted = receiver.bodies[1]
    assert exhausted["event"] == "pool.exhausted" and "account" not in exhausted
    clock.advance(901)  # a's reset has passed: it serves again
    assert ask(client).status_code == 200
    assert ask(client).status_code == 200
    assert events(app) == ["account.rate_limited", "pool.exhausted", "account.recovered", "pool.recovered"]
    assert row(app, a).status == "active"
    upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
    clock.advance(alerts.ACCOUNT_SPAN_MS // 1000)
    assert ask(client).status_code == 429
    assert events(app)[-2:] == ["account.rate_limited", "pool.exhausted"]  # dry again: told again


@pytest.mark.uses_upstream
def test_a_key_at_its_limit_is_told_once_a_window(app, authed, clock, upstream, receiver):
    pool_account(app, clock, "a")
    made = post(authed, "/api/api-keys", {"name": "laptop", "limits": [
        {"metric": "totalTokens", "window": "day", "max": 100}]}).get_json()
    authed.patch(SETTINGS, json={"webhookUrl": hook(receiver)})
    bearer = {"Authorization": f"Bearer {made['key']}"}
    assert ask(authed, headers=bearer).status_code == 200
    for _ in range(3):
        assert ask(authed, headers=bearer).status_code == 429
    assert events(app) == ["api_key.limit_reached"]
    send_all(app, clock)
    body = receiver.bodies[0]
    assert body["apiKey"] == {"id": made["id"], "name": "laptop"} and "account" not in body
    assert "100 totalTokens per day" in body["message"] and "2026-11-26T00:00:00Z" in body["message"]
    clock.advance(86400)  # the next day: a new window
    assert ask(authed, headers=bearer).status_code == 200
    assert ask(authed, headers=bearer).status_code == 429
    assert events(app) == ["api_key.limit_reached"] * 2


# -- delivery ---------------------------------------------------------------------------------------

def test_a_failed_delivery_is_retried_with_backoff_then_given_up(app, receiver, clock):
    set_webhook(app, hook(receiver))
    account = pool_account(app, clock, "a")
    receiver.answer(Answer(500), Answer(503), Answer(200))
    change(app, account, NOW_MS, status="deactivated")
    sender, started = app.extensions["lb_alerts"], clock()
    assert sender.tick(NOW_MS) is not None  # the first try: 500
    assert sender.tick(NOW_MS) is None  # not due again yet
    first_retry = outbox(app)[0].next_attempt_at
    assert 0 < first_retry - NOW_MS <= 2000  # the first retry within 2 s
    clock.now = first_retry / 1000
    assert sender.tick(first_retry) is not None  # 503
    clock.now = outbox(app)[0].next_attempt_at / 1000
    assert sender.tick(int(clock() * 1000)) is not None  # 200
    sent = outbox(app)[0]
    assert (sent.status, sent.attempts, sent.last_error) == ("delivered", 3, None)
    assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]
    assert clock() - started <= 30

    receiver.default = Answer(500)
    change(app, account, NOW_MS, status="active")
    tries = 0
    while outbox(app)[-1].status == "pending":
        clock.now = max(clock(), outbox(app)[-1].next_attempt_at / 1000)
        assert sender.tick(int(clock() * 1000)) is not None
        tries += 1
    failed = outbox(app)[-1]
    assert (tries, failed.status, failed.last_error) == (4, "failed", "the receiver answered 500")
    assert clock() - started <= 30 + 4 * alerts.TIMEOUT_S  # every try begun within 30 s of the first


def test_an_unreachable_or_hanging_receiver_fails_the_try_within_the_timeout(app, receiver, clock):
    set_webhook(app, LOOPBACK_NOWHERE + "/hook")
    account = pool_account(app, clock, "a")
    change(app, account, NOW_MS, status="deactivated")
    app.extensions["lb_alerts"].tick(NOW_MS)
    assert outbox(app)[0].status == "pending" and "Connection" in outbox(app)[0].last_error

    gate = threading.Event()
    receiver.answer(Answer(200, gate=gate))
    set_webhook(app, hook(receiver))
    app.extensions["lb_alerts"].timeout = 0.3
    clock.now = outbox(app)[0].next_attempt_at / 1000
    begun = time.monotonic()
    app.extensions["lb_alerts"].tick(int(clock() * 1000))
    assert time.monotonic() - begun < 5
    gate.set()
    assert outbox(app)[0].attempts == 2 and "Timeout" in outbox(app)[0].last_error


@pytest.mark.uses_upstream
def test_a_receiver_that_hangs_slows_no_client_request(app, client, clock, upstream, receiver):
    set_webhook(app, hook(receiver))
    a = pool_account(app, clock, "a")
    change(app, a, NOW_MS, status="deactivated")
    change(app, a, NOW_MS, status="active")
    gate = threading.Event()
    receiver.answer(Answer(200, gate=gate))
    sender = threading.Thread(target=app.extensions["lb_alerts"].tick, args=(NOW_MS,))
    sender.start()
    try:
        assert receiver.arrived.wait(10)  # the sender now waits on the receiver
        upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
        assert ask(client).status_code == 429  # a request that causes two events is answered meanwhile
        assert ask(client).status_code == 429
        assert sender.is_alive() and len(receiver.requests) == 1
        assert events(app) == ["account.deactivated", "account.recovered", "account.rate_limited", "pool.exhausted"]
    finally:
        gate.set()
        sender.join(10)
    assert outbox(app)[0].status == "delivered"


def test_a_claimed_row_is_not_sent_by_another_sender_until_its_lease_ends(app, make_app, receiver, clock):
    set_webhook(app, hook(receiver))
    change(app, pool_account(app, clock, "a"), NOW_MS, status="deactivated")
    other = make_app()  # another instance on the same database
    with app.app_context(), db.connection_context():
        assert app.extensions["lb_alerts"].claim(NOW_MS) is not None
    with other.app_context(), db.connection_context():
        assert other.extensions["lb_alerts"].claim(NOW_MS + 1000) is None
        assert other.extensions["lb_alerts"].claim(NOW_MS + alerts.LEASE_MS) is not None  # the first one died


def test_a_refused_key_asks_the_database_once_a_while_per_limit(app, clock):
    set_webhook(app, "http://127.0.0.1:9/hook")
    with app.app_context(), db.connection_context():
        keys.create({"name": "ci"}, NOW_MS)
        key = tables.ApiKey.get()
        sender = app.extensions["lb_alerts"]
        day = {"metric": "totalTokens", "window": "day", "max": 1, "resetsAt": "2026-11-26T00:00:00Z"}
        assert sender.limit_refused(key, day, NOW_MS)
        assert not sender.limit_refused(key, day, NOW_MS + 1000)  # remembered: no transaction at all
        assert sender.limit_refused(key, dict(day, window="week"), NOW_MS + 1000)  # another limit
        assert sender.limit_refused(key, day, NOW_MS + alerts.NOTE_MS)  # asked again: the row decides
    assert events(app) == ["api_key.limit_reached"] * 2


def test_sent_and_given_up_rows_go_after_a_week_pending_ones_stay(app, receiver, clock):
    set_webhook(app, hook(receiver))
    account = pool_account(app, clock, "a")
    change(app, account, NOW_MS, status="deactivated")
    send_all(app, clock)  # delivered
    receiver.default = Answer(500)
    change(app, account, NOW_MS, status="active")
    for _ in range(4):  # given up
        clock.now = max(clock(), outbox(app)[-1].next_attempt_at / 1000)
        app.extensions["lb_alerts"].tick(int(clock() * 1000))
    set_webhook(app, None)
    with app.app_context(), db.connection_context():
        tables.Alert.insert(event="pool.exhausted", payload="{}", created_at=NOW_MS, next_attempt_at=10**15).execute()
        sender = app.extensions["lb_alerts"]
        sender.forget(NOW_MS + alerts.KEEP_MS)  # not older than a week yet
        assert len(outbox(app)) == 3
        sender.forget(NOW_MS + alerts.KEEP_MS + 1)
    assert [(alert.event, alert.status) for alert in outbox(app)] == [("pool.exhausted", "pending")]


# -- the test event ---------------------------------------------------------------------------------

def test_the_test_event_is_sent_now_and_says_what_happened(authed, receiver, clock):
    assert authed.post(TEST).status_code == 409
    assert authed.post(TEST).get_json()["error"]["code"] == "webhook_not_configured"
    authed.patch(SETTINGS, json={"webhookUrl": hook(receiver), "webhookEvents": []})
    assert authed.post(TEST).get_json() == {"delivered": True, "status": 200, "error": None}
    body = receiver.bodies[0]
    assert (body["event"], body["at"]) == ("test", "2026-11-25T07:00:00Z") and body["text"]
    receiver.answer(Answer(404))
    assert authed.post(TEST).get_json() == {"delivered": False, "status": 404,
                                            "error": "the receiver answered 404"}
    authed.patch(SETTINGS, json={"webhookUrl": LOOPBACK_NOWHERE})
    failed = authed.post(TEST).get_json()
    assert (failed["delivered"], failed["status"]) == (False, None) and failed["error"]


def test_the_test_event_needs_a_session(client):
    post(client, "/api/dashboard-auth/password/setup", {"password": "correct horse battery"})
    client.post("/api/dashboard-auth/logout")
    assert client.post(TEST).get_json() == AUTH_REQUIRED


def test_no_token_or_key_is_in_any_body(app, authed, receiver, clock):
    account = pool_account(app, clock, "a")
    with app.app_context(), db.connection_context():
        _, key = keys.create({"name": "ci"}, NOW_MS)
    authed.patch(SETTINGS, json={"webhookUrl": hook(receiver)})
    change(app, account, NOW_MS, status="rate_limited", resets_at=NOW_MS + 5000)
    change(app, account, NOW_MS, status="active")
    change(app, account, NOW_MS, status="deactivated", status_reason="refresh_token_reused")
    with app.app_context(), db.connection_context():
        alerts.request_ended("rate_limit", "usage_limit_reached", NOW_MS)
        key_row = tables.ApiKey.get()
        alerts.limit_reached(key_row, {"metric": "requests", "window": "day", "max": 1,
                                       "resetsAt": "2026-11-26T00:00:00Z"}, NOW_MS)
    send_all(app, clock)
    authed.post(TEST)
    assert len(receiver.requests) == 6
    _, access, refresh = stored_tokens(app, account)
    raw = json.dumps(receiver.requests)
    for secret in (key, access, refresh, row(app, account).access_token, app.config["SECRET_KEY"]):
        assert secret not in raw


# -- across instances ------------------------------------------------------------------------------

def test_two_instances_deliver_each_event_once(make_app, tmp_path, receiver, upstream, token_server):
    """Two waitress processes on one database, their senders on the real clock: every outbox row reaches the
    receiver once, and a pool that runs dry under both at once is told once."""
    app = make_app(CLOCK=time.time)
    pool_account(app, time.time, "a")
    set_webhook(app, hook(receiver), events=["account.deactivated", "pool.exhausted", "account.rate_limited"])
    now = int(time.time() * 1000)
    with app.app_context(), db.connection_context():  # thirty events ready before the senders start
        assert all(alerts.emit("account.deactivated", now, f"event {i}", dedupe=f"many:{i}") for i in range(30))
        assert not alerts.emit("account.deactivated", now, "again", dedupe="many:0")  # written once
    upstream.plan("ws-a", Fail(429, {"error": {"type": "usage_limit_reached", "message": "limit",
                                               "resets_at": int(time.time()) + 3600}}))
    servers = [app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, THREADS=8)
               for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: server.start(), servers))
        assert ask_server(servers[0]) == 429  # the one account is limited: the pool is dry
        with ThreadPoolExecutor(8) as pool:  # and both instances refuse at once, over and over
            answers = list(pool.map(lambda i: ask_server(servers[i % 2]), range(8)))
        assert set(answers) == {429} and upstream.count() == 1
        deadline = time.monotonic() + 30
        while any(alert.status == "pending" for alert in outbox(app)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(alert.status == "delivered" for alert in outbox(app))
    finally:
        for server in servers:
            server.stop()
    received = [body["message"] for body in receiver.bodies]
    assert sorted(m for m in received if m.startswith("event ")) == sorted(
        f"event {i}" for i in range(30))
    assert len(received) == len(set(received)) == len(outbox(app)) == 32
    assert [body["event"] for body in receiver.bodies].count("pool.exhausted") == 1
    assert [body["event"] for body in receiver.bodies].count("account.rate_limited") == 1


def ask_server(server):
    import http.client

    from helpers.http import CODEX, CODEX_BODY
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", CODEX, body=json.dumps(CODEX_BODY), headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()
