"""lb.proxy.capacity through the real server: past its capacity a proxied request is answered at once, 503
server_busy, never queued unseen; a place comes back when its stream is read to the end or its client goes away;
and the default server carries a few hundred streams at once (the thousand is the benchmark's)."""
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtureapps.upstream import Stream
from helpers.data import logs, pool_account
from helpers.http import CODEX, CODEX_BODY
from helpers.servers import app_server, call, eventually

pytestmark = pytest.mark.uses_upstream


@pytest.fixture
def serve(make_app, tmp_path, upstream, token_server):
    """start(**settings): the real server in front of the fake upstream with account "a" in its pool:
    (server, an in-process app on its database)."""
    started = []

    def start(**settings):
        app = make_app(CLOCK=time.time)
        pool_account(app, time.time, "a")
        server = app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url,
                            **settings).start()
        started.append(server)
        return server, app

    yield start
    for server in started:
        server.stop()


def open_stream(port):
    """A proxied stream whose first bytes have arrived: (connection, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", CODEX, body=json.dumps(CODEX_BODY), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.read1(65536)
    return conn, response


def hang_up(conn, response):
    """Close a stream's socket: the response holds it open as long as the connection does."""
    response.close()
    conn.close()


def ask(port):
    """A proxied request that is no stream: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/v1/models")
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def test_a_full_server_answers_503_server_busy_at_once_and_each_place_comes_back(serve, upstream):
    server, app = serve(CAPACITY=2)
    read_to_end = threading.Event()
    # The second stream goes on for seconds, so the server meets its gone client on a write.
    upstream.plan("ws-a", Stream(gate=read_to_end), Stream(deltas=400, delay=0.02))
    first, second = open_stream(server.port), open_stream(server.port)
    # Both places are held by streams waiting on their upstream: a third request is refused, not queued.
    status, headers, body = ask(server.port)
    assert (status, body["error"]["code"], body["error"]["type"]) == (503, "server_busy", "server_error")
    assert headers["Retry-After"] == "1" and "capacity of 2" in body["error"]["message"]
    assert call(server.port, "GET", "/healthz")[0] == 200  # the dashboard's side still answers

    read_to_end.set()  # the first stream ends and is read whole: its place comes back
    assert b"response.completed" in first[1].read()
    hang_up(*first)
    assert ask(server.port)[0] == 200

    hang_up(*second)  # the second one's client goes away mid-stream: its place comes back too
    assert eventually(lambda: [log.status for log in logs(app)] == ["ok", "cancelled"]), [
        (log.status, log.error_code) for log in logs(app)]
    assert ask(server.port)[0] == 200 and ask(server.port)[0] == 200  # both places free again
    assert len(logs(app)) == 2  # the refusal is no request log; the models list is none either


def test_the_default_server_carries_three_hundred_streams_at_once(serve, upstream):
    server, app = serve(THREADS=None)  # the default sizing: CAPACITY (1000) + 32 threads
    gate = threading.Event()
    upstream.default = Stream(gate=gate)
    count = 300
    opened = threading.Barrier(count + 1, timeout=60)

    def stream(_):
        conn, response = open_stream(server.port)
        try:
            opened.wait()  # all of them open at once
            return response.read()
        finally:
            hang_up(conn, response)

    with ThreadPoolExecutor(count) as pool:
        try:
            bodies = pool.map(stream, range(count))
            opened.wait()
            assert call(server.port, "GET", "/healthz")[0] == 200  # answered while 300 streams are open
            assert ask(server.port)[0] == 200
        finally:
            gate.set()
        bodies = list(bodies)
    assert all(b"response.completed" in body for body in bodies)
    assert eventually(lambda: len(logs(app)) == count)
    assert {log.status for log in logs(app)} == {"ok"}
