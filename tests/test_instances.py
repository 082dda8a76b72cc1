"""Several instances of the proxy on one database: two waitress processes (app.py --waitress) on the same
PostgreSQL database, or the same SQLite file (WAL, two processes), in front of one fake upstream and one fake
token server, on the real clock. What one instance learns (a key, an account's limit, a sticky pin, new
tokens) the other sees at once, because it lives in the database."""
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtureapps.token_server import Answer
from fixtureapps.upstream import Fail, Stream
from helpers.data import PASSWORD, REFRESH_1, jwt, logs, pool_account, row, stored_tokens, write
from helpers.http import AUTH, CODEX, CODEX_BODY, sse
from helpers.servers import Server, app_server, call, call_with_cookie
from lb import crypto, keys, tables

# Runs app.py with lb.refresh._pause announcing itself: a line in the file named first, each time the
# instance finds another's refresh lease held and waits to look again. Used as a Server's command prefix.
WATCHER = """
import os, runpy, sys
marker, _, app_py, *args = sys.argv[1:]
sys.path.insert(0, os.path.dirname(app_py))
from lb import refresh
pause = refresh._pause
def announced():
    with open(marker, "a") as out:
        out.write("waiting\\n")
    pause()
refresh._pause = announced
sys.argv = [app_py, *args]
runpy.run_path(app_py, run_name="__main__")
"""


@pytest.fixture
def instances(make_app, tmp_path, upstream, token_server):
    """(app, start): ``app`` is an in-process app on the shared database (the real clock), to put accounts in
    the pool and look at the rows; ``start()`` then starts the two servers and returns them. With
    ``watched``, the second one announces in ``<its data dir's parent>/lease-waits`` each wait on a lease."""
    app = make_app(CLOCK=time.time)
    servers = [app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, THREADS=8)
               for _ in range(2)]

    def start(watched=False):
        prefixes = [(), ()]
        if watched:
            (tmp_path / "watcher.py").write_text(WATCHER)
            prefixes[1] = (sys.executable, str(tmp_path / "watcher.py"), str(tmp_path / "lease-waits"))
        with ThreadPoolExecutor(2) as pool:  # both start at once, on the schema the app has made
            list(pool.map(Server.start, servers, prefixes))
        return servers

    try:
        yield app, start
    finally:
        for server in servers:
            server.stop()


def ask(server, body=None, key=None):
    """A Codex CLI request to ``server``, read to the end: (status, the SSE event types, or the JSON body)."""
    payload = {k: v for k, v in {**CODEX_BODY, **(body or {})}.items() if v is not None}
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", CODEX, body=json.dumps(payload), headers=headers)
        response = conn.getresponse()
        data = response.read()  # a stream's log and pin are written before its end reaches the client
    finally:
        conn.close()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        return response.status, [kind for kind, _ in sse(data)]
    return response.status, json.loads(data)


def completed(answer):
    status, kinds = answer
    return status == 200 and kinds[-1] == "response.completed"


def test_a_key_made_on_one_instance_works_on_the_other_and_its_deletion_too(instances, upstream):
    app, start = instances
    pool_account(app, time.time, "a")
    one, two = start()
    assert call(one.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})[0] == 200
    status, _, cookie = call_with_cookie(one.port, "POST", AUTH + "/password/login", {"password": PASSWORD})
    assert status == 200 and cookie
    status, made = call(one.port, "POST", "/api/api-keys", {"name": "shared"}, headers=cookie)
    assert status == 201, made
    assert completed(ask(two, key=made["key"]))
    assert upstream.accounts() == ["ws-a"]
    assert call(two.port, "DELETE", f"/api/api-keys/{made['id']}", headers=cookie)[0] == 204
    status, body = ask(one, key=made["key"])
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")
    assert upstream.count() == 1  # refused before the pool


def test_an_account_limited_through_one_instance_is_skipped_by_the_other(instances, upstream):
    app, start = instances
    first = pool_account(app, time.time, "a")
    pool_account(app, time.time, "b", secondary_used_percent=50.0)  # "a" is the less used: tried first
    resets = int(time.time()) + 3600
    upstream.plan("ws-a", Fail(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has "
                                               "been reached", "resets_at": resets}}))
    one, two = start()
    assert completed(ask(one))
    assert upstream.accounts() == ["ws-a", "ws-b"]  # "a" answered 429, the request failed over to "b"
    account = row(app, first)
    assert (account.status, account.resets_at) == ("rate_limited", resets * 1000)
    assert completed(ask(two))
    assert upstream.accounts() == ["ws-a", "ws-b", "ws-b"]  # straight to "b": "a" is limited in the database


def test_a_sticky_pin_made_through_one_instance_holds_on_the_other(instances, upstream):
    app, start = instances
    ids = {f"ws-{name}": pool_account(app, time.time, name) for name in ("a", "b")}
    one, two = start()
    assert completed(ask(one, {"prompt_cache_key": "conv-x"}))
    [pinned] = upstream.accounts()
    other = next(workspace for workspace in ids if workspace != pinned)
    write(app, ids[pinned], secondary_used_percent=90.0)  # the pinned account is now the most used
    assert completed(ask(two, {"prompt_cache_key": "conv-x"}))
    assert completed(ask(two))  # without the key: the least used
    assert completed(ask(two, {"prompt_cache_key": "conv-y"}))  # a new conversation: the least used too
    assert upstream.accounts() == [pinned, pinned, other, other]


def test_a_pin_through_one_instances_momentary_limit_waits_for_its_account_on_the_other(instances, upstream):
    app, start = instances
    a = pool_account(app, time.time, "a")
    pool_account(app, time.time, "b", secondary_used_percent=50.0)  # "a" is the less used: pinned first
    one, two = start()
    assert completed(ask(one, {"prompt_cache_key": "conv-x"}))
    upstream.plan("ws-a", Fail(429, {"error": {"code": "too_many_requests", "message": "slow down"}},
                               headers={"Retry-After": "1"}))
    assert completed(ask(one, {"prompt_cache_key": "conv-x"}))  # "a" cools for a second: "b" serves this turn
    assert row(app, a).status == "active" and row(app, a).cooldown_until is not None
    asked = time.monotonic()
    assert completed(ask(two, {"prompt_cache_key": "conv-x"}))  # the pin stayed: the other waits for "a"
    assert upstream.accounts() == ["ws-a", "ws-a", "ws-b", "ws-a"]
    assert time.monotonic() - asked < 2.5  # within LB_STICKY_WAIT_MS, and nothing else


def test_one_refresh_per_account_across_both_instances(instances, upstream, token_server, tmp_path):
    app, start = instances
    account = pool_account(app, time.time, "a")
    expiring = jwt({"exp": int(time.time()) + 60, "jti": "access-old"})  # inside the 5-minute margin: refreshed
    write(app, account, access_token=crypto.seal(expiring, app.extensions["lb_fernet"]))
    new_access = jwt({"exp": int(time.time()) + 10 * 86400, "jti": "access-new"})
    new_refresh = "rt_refresh-token-new-0123456789"
    gate = threading.Event()
    token_server.answer(Answer(200, {"token_type": "Bearer", "expires_in": 864000, "access_token": new_access,
                                     "refresh_token": new_refresh}, gate=gate))
    one, two = start(watched=True)
    waits = tmp_path / "lease-waits"
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(ask, one)
        assert token_server.arrived.wait(10)  # instance 1 holds the lease; its refresh is held in flight
        assert row(app, account).refresh_lease_until is not None
        rest = [pool.submit(ask, server) for server in (two, two, two, one, one)]
        deadline = time.monotonic() + 10
        while not waits.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waits.exists(), "instance 2 never waited on the lease"
        # Nothing got through while the refresh is held: no second refresh, no request upstream with the
        # old token (instance 2 polls the lease, instance 1's other threads wait on the account's lock).
        done = [future for future in [first, *rest] if future.done()]
        assert done == [] and len(token_server.requests) == 1 and upstream.count() == 0
        gate.set()
        answers = [future.result(timeout=30) for future in [first, *rest]]
    assert all(completed(answer) for answer in answers), answers
    assert len(token_server.requests) == 1
    assert token_server.bodies[0]["refresh_token"] == REFRESH_1
    assert [r.headers["authorization"] for r in upstream.requests] == [f"Bearer {new_access}"] * 6
    assert stored_tokens(app, account)[1:] == (new_access, new_refresh)
    assert row(app, account).refresh_lease_until is None



@pytest.fixture
def two_workers(make_app, tmp_path, upstream, token_server):
    """(app, start) like ``instances``, but one server of two worker processes: start() returns it twice."""
    app = make_app(CLOCK=time.time)
    server = app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, THREADS=8,
                        WORKERS=2)
    try:
        yield app, lambda: [server.start()] * 2
    finally:
        server.stop()


@pytest.mark.parametrize("through", ["instances", "two_workers"])
def test_key_caps_hold_exactly_across_processes(request, upstream, through):
    app, start = request.getfixturevalue(through)
    pool_account(app, time.time, "a")
    with app.app_context(), tables.db.connection_context():
        now = int(time.time() * 1000)
        _, two_at_a_time = keys.create({"name": "two at a time", "caps": {"concurrentRequests": 2}}, now)
        _, three_a_minute = keys.create({"name": "three a minute", "caps": {"requestsPerMinute": 3}}, now)
        _, tokens_spent = keys.create({"name": "tokens spent", "caps": {"tokensPerMinute": 100}}, now)
    servers = start()
    assert completed(ask(servers[0], key=tokens_spent))  # 150 tokens: the minute's 100 are spent
    gate = threading.Event()
    upstream.default = Stream(gate=gate)  # an admitted request stays in flight until the gate opens
    for key, admitted in ((two_at_a_time, 2), (three_a_minute, 3), (tokens_spent, 0)):
        gate.clear()
        ready = threading.Barrier(20, timeout=30)

        def one(i, key=key, ready=ready):
            ready.wait()  # the twenty leave together, alternately to each instance
            return ask(servers[i % 2], key=key)

        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(one, i) for i in range(20)]
            try:
                deadline = time.monotonic() + 30
                while sum(f.done() for f in futures) < 20 - admitted and time.monotonic() < deadline:
                    time.sleep(0.02)  # the refusals come at once; the admitted wait on the gate
                early = [f.result() for f in futures if f.done()]
            finally:
                gate.set()
            answers = [f.result(timeout=30) for f in futures]
        assert len(early) == 20 - admitted
        assert all(status == 429 and body["error"]["code"] == "rate_limit_exceeded" for status, body in early)
        assert sorted(status for status, _ in answers) == [200] * admitted + [429] * (20 - admitted)
    assert [log.status for log in logs(app)] == ["ok"] * 6  # the refusals are no request logs
    with app.app_context(), tables.db.connection_context():
        assert tables.KeySlot.select().count() == 0  # each admitted request freed its slot
