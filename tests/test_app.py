"""app.main, the entry point, and the real server it starts.

main() serves on the loopback default or what LB_* says, and exits 2 with one line
naming a bad variable. The bootstrap token is logged only while no password is set;
a password never reaches a log. Then waitress in its own process, spoken to over
HTTP: an acknowledged batch survives kill -9; concurrent writers in several
processes wait for each other instead of failing, and never store a requestId
twice; errors from the real server are JSON, and a body over the limit is refused
before it is read. Two instances on one database share sessions, the rate limit and
the logs.
"""
import http.client
import json
import logging
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import app as entry
from fixtureapps.upstream import Stream
from helpers.data import BOOTSTRAP, INGEST, PASSWORD, POSTGRES_URL, ROOT, empty_postgres, logs, pool_account
from helpers.http import AUTH, AUTH_REQUIRED, BEARER, CODEX, CODEX_BODY, change, error, login, setup_password
from helpers.servers import app_server, call, call_with_cookie, children, eventually, free_port, wait_for



# -- main() ----------------------------------------------------------------------------------

class FakeServe:
    """Stands in for waitress.serve and records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, app, **options):
        self.calls.append((app, options))


def served(monkeypatch, tmp_path, argv=(), **variables):
    """Run main() with these LB_* variables and a FakeServe: (app, the options waitress got)."""
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    for name, value in variables.items():
        monkeypatch.setenv(f"LB_{name}", value)
    serve = FakeServe()
    assert entry.main(argv=list(argv), serve=serve) == 0
    (app, options), = serve.calls
    return app, options


def test_main_serves_on_the_loopback_default(monkeypatch, tmp_path, capsys):
    app, options = served(monkeypatch, tmp_path)
    assert (options["host"], options["port"], options["threads"]) == ("127.0.0.1", 2455, 1032)
    assert options["connection_limit"] == 2064
    assert options["max_request_body_size"] == 32 * 1048576 + 1  # the proxy's limit, the larger
    assert options["max_request_body_size"] > app.config["MAX_BODY_BYTES"]
    assert capsys.readouterr().err == ""


def test_main_bounds_what_waitress_reads_and_holds(monkeypatch, tmp_path):
    _, options = served(monkeypatch, tmp_path, MAX_BODY_BYTES="4096", PROXY_MAX_BODY_BYTES="2048",
                        CONNECTION_LIMIT="300", CHANNEL_TIMEOUT="45")
    # waitress refuses a body of max_request_body_size bytes or more: 4096 itself gets through. One
    # limit for every path, the larger of the two; the app holds each route to its own.
    assert options["max_request_body_size"] == 4097
    assert (options["connection_limit"], options["channel_timeout"]) == (300, 45)


def test_main_exits_2_with_one_line_when_the_port_is_taken(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("LB_PORT", str(taken.getsockname()[1]))
        assert entry.main(argv=["--waitress"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0] and "in use" in lines[0]


def test_the_help_reads_as_plain_text(capsys):
    with pytest.raises(SystemExit) as exited:
        entry.main(argv=["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "python app.py --waitress" in out and "``" not in out


def test_the_development_server_logs_one_line_per_request_without_the_query(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
    env.update(LB_DATA_DIR=str(tmp_path / "data"), LB_PORT=str(port), LB_CHECKPOINT_SECONDS="0")
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py")], env=env, stdout=log, stderr=log)
    try:
        assert wait_for(port)
        assert call(port, "GET", "/healthz?token=do-not-log-me")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log_path.read_text()
    lines = [line for line in text.splitlines() if "/healthz" in line]
    assert len(lines) == 2 and all(" GET /healthz 200 " in line for line in lines)  # the readiness probe, ours
    assert "do-not-log-me" not in text and "\x1b[" not in text


def test_main_honours_host_port_and_threads(monkeypatch, tmp_path):
    _, options = served(monkeypatch, tmp_path, ["--waitress"], HOST="0.0.0.0", PORT="8080", THREADS="4")
    assert (options["host"], options["port"], options["threads"]) == ("0.0.0.0", 8080, 4)


@pytest.mark.parametrize("variable, value", [
    ("LB_PORT", "abc"),
    ("LB_PORT", "-1"),
    ("LB_THREADS", "0"),
    ("LB_BILLING_CYCLE_DAY", "31"),
    ("LB_DATA_DIR", None),  # under a regular file: cannot be created
])
def test_main_exits_2_with_one_line_naming_the_variable(monkeypatch, tmp_path, capsys, variable, value):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    if value is None:
        (tmp_path / "file").write_text("not a directory")
        value = str(tmp_path / "file" / "data")
    monkeypatch.setenv(variable, value)
    serve = FakeServe()
    assert entry.main(argv=[], serve=serve) == 2
    assert serve.calls == []
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert captured.out == ""


# -- secrets in the log --------------------------------------------------------------------------

def test_the_bootstrap_token_is_logged_as_the_server_starts_only_while_no_password_is_set(
        monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LB_BOOTSTRAP_TOKEN", BOOTSTRAP)
    if POSTGRES_URL:
        empty_postgres()
        monkeypatch.setenv("LB_DATABASE_URL", POSTGRES_URL)
    app = entry.create_app()
    assert BOOTSTRAP not in caplog.text  # building the app (every flask command does) logs nothing
    assert entry.main(argv=[], serve=lambda app, **options: None) == 0
    assert [r.levelno for r in caplog.records if BOOTSTRAP in r.getMessage()] == [logging.WARNING]
    setup_password(app.test_client())
    caplog.clear()
    assert entry.main(argv=[], serve=lambda app, **options: None) == 0
    assert BOOTSTRAP not in caplog.text and "bootstrap token" not in caplog.text
    assert PASSWORD not in caplog.text


def test_the_password_never_reaches_a_log(authed, caplog):
    caplog.set_level(logging.DEBUG)
    new = "another long password"
    changed = change(authed, new=new)
    assert changed.status_code == 200 and changed.get_json() == {"status": "ok"}
    wrong = login(authed, "a wrong password")
    assert error(wrong) == (401, "invalid_credentials")
    for secret in (PASSWORD, new, "a wrong password"):
        assert secret not in caplog.text


# -- the real server -------------------------------------------------------------------------------

def ingest_over_http(port, items):
    """POST one batch to the real server with its ingest token: (status, body)."""
    return call(port, "POST", "/api/request-logs", {"requests": items}, BEARER)


def all_logs(port):
    """Every stored log, through the paginated API (open to loopback before a password exists)."""
    rows, cursor = [], None
    while True:
        path = "/api/request-logs?limit=500" + (f"&cursor={cursor}" if cursor else "")
        status, body = call(port, "GET", path)
        assert status == 200, body
        rows += body["requests"]
        cursor = body["nextCursor"]
        if cursor is None:
            return rows


def test_an_acknowledged_batch_survives_kill_9(server):
    items = [{"requestId": f"kill-{i}", "model": "gpt-4o-mini", "inputTokens": 1000, "outputTokens": 10}
             for i in range(300)]
    assert ingest_over_http(server.port, items) == (201, {"accepted": 300, "duplicates": 0})
    server.kill_hard()
    server.start()
    logs = all_logs(server.port)
    assert sorted(r["requestId"] for r in logs) == sorted(i["requestId"] for i in items)
    status, overview = call(server.port, "GET", "/api/dashboard/overview")
    assert status == 200 and overview["requestCount"] == 300
    assert overview["usageSummary"]["inputTokens"] == 300_000


def _writer(args):
    """One client process: post batches whose requestIds overlap the other writers'."""
    port, writer, batches = args
    results = []
    for b in range(batches):
        items = [{"requestId": f"id-{(writer * 50 + b * 100 + i) % 600}", "model": "o3-pro", "inputTokens": 7}
                 for i in range(100)]
        results.append(ingest_over_http(port, items))
    return results


def test_concurrent_writers_wait_and_never_store_an_id_twice(server):
    with ProcessPoolExecutor(4) as pool:
        results = [r for batch in pool.map(_writer, [(server.port, w, 6) for w in range(4)]) for r in batch]
    assert all(status == 201 for status, _ in results), results
    accepted = sum(body["accepted"] for _, body in results)
    logs = all_logs(server.port)
    ids = [r["requestId"] for r in logs]
    assert set(ids) == {f"id-{n}" for n in range(600)}  # every id sent is stored: nothing lost
    assert len(ids) == len(set(ids)) == accepted == 600
    status, overview = call(server.port, "GET", "/api/dashboard/overview")
    assert status == 200 and overview["usageSummary"]["inputTokens"] == 600 * 7


def _crossing_writer(args):
    """One client process: batches of the same 200 requestIds as the other writers', over three hours, in its
    own order (ascending or descending), so that concurrent transactions meet the same rows in opposite orders."""
    port, writer, batches = args
    now = time.time()
    results = []
    for b in range(batches):
        ids = range(200) if writer % 2 else reversed(range(200))
        items = [{"requestId": f"id-{b}-{k}", "model": "o3-pro", "inputTokens": 7,
                  "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 * (k % 3)))}
                 for k in ids]
        results.append(ingest_over_http(port, items))
    return results


def test_concurrent_batches_crossing_the_same_rows_in_opposite_orders_never_deadlock(server):
    # Each transaction takes its row locks (the requestIds' index entries, the rollups' rows) in one sorted
    # order, whatever the batch's order: on PostgreSQL two batches in opposite orders would otherwise deadlock.
    with ProcessPoolExecutor(4) as pool:
        results = [r for batch in pool.map(_crossing_writer, [(server.port, w, 8) for w in range(4)]) for r in batch]
    assert all(status == 201 for status, _ in results), [r for r in results if r[0] != 201][:3]
    assert sum(body["accepted"] for _, body in results) == 8 * 200
    status, overview = call(server.port, "GET", "/api/dashboard/overview")
    assert status == 200 and overview["requestCount"] == 8 * 200


def raw_exchange(port, data, piece=65536):
    """Send raw bytes piece by piece, stopping early if the server answers first (as it may, refusing
    a body); then read the answer until the server closes: (status, head text, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(data), piece):
            if select.select([sock], [], [], 0.05)[0]:
                break  # an answer already: the rest would be refused unread
            sock.sendall(data[start:start + piece])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), body


LIMIT = 1048576  # the default LB_MAX_BODY_BYTES
TOO_LARGE = {"error": {"code": "payload_too_large", "message": f"Request body is larger than {LIMIT} bytes"}}


def post_head(length_header):
    return (f"POST /api/request-logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\n{length_header}\r\n\r\n").encode()


def test_errors_from_the_real_server_are_json(server):
    status, body = call(server.port, "GET", "/no/such/path")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, head, body = raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and "application/json" in head
    assert json.loads(body) == {"error": {"code": "bad_request", "message": "Bad Request"}}


def test_a_declared_body_over_the_limit_is_refused_before_a_byte_of_it_is_read(server):
    # Only the head is sent: the answer comes at once, not after 1 GiB.
    status, head, body = raw_exchange(server.port, post_head("Content-Length: 1073741824"))
    assert status == 413 and "application/json" in head
    assert json.loads(body) == TOO_LARGE


def test_more_than_1024_open_connections_leave_the_server_serving(tmp_path):
    """waitress's loop polls with poll(): select() cannot watch a descriptor above 1023, and the loop died of
    it, taking every open stream with it."""
    if POSTGRES_URL:
        empty_postgres()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:  # this test's own end of 1,100 connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    server = app_server(tmp_path / "data", CONNECTION_LIMIT=2000).start()
    held = []
    try:
        for _ in range(1100):
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        deadline = time.monotonic() + 30
        while len(os.listdir(f"/proc/{server.pid}/fd")) <= 1100 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server accepts them as its loop comes round
        assert len(os.listdir(f"/proc/{server.pid}/fd")) > 1100
        assert call(server.port, "GET", "/healthz") == (200, {"status": "ok"})
        assert server.proc.poll() is None
        assert "open files limit:" in server.log()
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(tmp_path):
    # One chunk a byte over the limit, and nothing after it: the refusal comes once the limit is
    # crossed, with nothing left unread (unread bytes would turn the server's close into a reset).
    # waitress holds every path to the larger limit, here the dashboard's.
    if POSTGRES_URL:
        empty_postgres()
    server = app_server(tmp_path / "data", PROXY_MAX_BODY_BYTES=LIMIT).start()
    try:
        data = post_head("Transfer-Encoding: chunked") + b"%x\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1)
        status, head, body = raw_exchange(server.port, data)
        assert status == 413 and json.loads(body) == TOO_LARGE
    finally:
        server.stop()


def test_a_whole_chunked_body_over_the_dashboard_limit_is_refused_by_the_app(server):
    data = post_head("Transfer-Encoding: chunked") + b"%x\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1) + b"\r\n0\r\n\r\n"
    status, head, body = raw_exchange(server.port, data)
    assert status == 413 and json.loads(body) == TOO_LARGE


def test_a_body_at_the_limit_reaches_the_app(server):
    payload = json.dumps({"requests": [], "padding": ""}).encode()
    payload = payload[:-2] + b"x" * (LIMIT - len(payload)) + b'"}'
    assert len(payload) == LIMIT
    data = post_head(f"Content-Length: {LIMIT}\r\nAuthorization: Bearer {INGEST}") + payload
    status, _, body = raw_exchange(server.port, data)
    assert (status, json.loads(body)) == (201, {"accepted": 0, "duplicates": 0})


# -- several instances on one database -------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    """Two servers on one database: the same PostgreSQL database, or the same SQLite file."""
    if POSTGRES_URL:
        empty_postgres()
    first = app_server(tmp_path / "data").start()
    second = app_server(tmp_path / "data")
    try:
        yield first, second.start()
    finally:
        first.stop()
        second.stop()


def test_a_session_made_on_one_instance_works_and_ends_on_the_other(pair):
    a, b = pair
    status, _, cookie = call_with_cookie(a.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})
    assert status == 200
    assert call(b.port, "GET", "/api/dashboard/overview", headers=cookie)[0] == 200
    assert call(b.port, "POST", AUTH + "/logout", headers=cookie) == (200, {"status": "ok"})
    assert call(a.port, "GET", "/api/dashboard/overview", headers=cookie) == (401, AUTH_REQUIRED)


def test_the_failed_login_limit_counts_across_instances(pair):
    a, b = pair
    assert call(a.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})[0] == 200
    attempts = [(port, "POST", AUTH + "/password/login", {"password": f"wrong {i}"})
                for i, port in enumerate([a.port, b.port] * 32)]
    with ThreadPoolExecutor(64) as pool:
        statuses = [status for status, _ in pool.map(lambda r: call(*r), attempts)]
    assert sorted(statuses) == [401] * 8 + [429] * 56


def test_concurrent_ingest_into_two_instances_loses_and_doubles_nothing(pair):
    a, b = pair
    with ProcessPoolExecutor(4) as pool:
        jobs = [((a, b)[w % 2].port, w, 6) for w in range(4)]
        results = [r for batch in pool.map(_writer, jobs) for r in batch]
    assert all(status == 201 for status, _ in results), results
    ids = [r["requestId"] for r in all_logs(b.port)]
    assert sorted(ids) == sorted(f"id-{n}" for n in range(600))
    assert sum(body["accepted"] for _, body in results) == 600
    for port in (a.port, b.port):
        status, overview = call(port, "GET", "/api/dashboard/overview")
        assert status == 200 and overview["requestCount"] == 600 and overview["usageSummary"]["inputTokens"] == 4200


def test_every_answer_but_a_stream_keeps_its_connection(server):
    """Each non-stream answer carries a Content-Length, so waitress keeps the connection for the next request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    asks = [("GET", "/healthz", None, {}), ("GET", "/", None, {}), ("GET", "/static/app.js", None, {}),
            ("GET", "/api/dashboard-auth/session", None, {}), ("GET", "/api/accounts", None, {}),
            ("GET", "/v1/models", None, {}), ("GET", "/nope", None, {}), ("PUT", "/healthz", None, {}),
            ("POST", "/api/request-logs", json.dumps({"requests": []}),
             {"Content-Type": "application/json", **BEARER}),
            ("POST", "/v1/responses", "{", {"Content-Type": "application/json"})]
    try:
        conn.connect()
        first = conn.sock
        for method, path, body, headers in asks:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            assert response.getheader("Content-Length") == str(len(data)), (method, path)
            assert not response.will_close and conn.sock is first, (method, path, response.status)
    finally:
        conn.close()


# -- workers ------------------------------------------------------------------------------------

def test_workers_serve_one_address_a_dead_one_is_replaced_and_sigterm_stops_them_all(tmp_path):
    if POSTGRES_URL:
        empty_postgres()
    server = app_server(tmp_path / "data", WORKERS=2).start()
    try:
        assert eventually(lambda: len(children(server.pid)) == 2)
        first = children(server.pid)
        assert all(call(server.port, "GET", "/healthz")[0] == 200 for _ in range(20))
        os.kill(first[0], signal.SIGKILL)
        assert eventually(lambda: len(children(server.pid)) == 2 and first[0] not in children(server.pid))
        assert all(call(server.port, "GET", "/healthz")[0] == 200 for _ in range(20))
        assert eventually(lambda: f"worker {first[0]} ended (signal 9); starting another" in server.log())
        workers = children(server.pid)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # none left behind
        assert "serving http://127.0.0.1:%d with 2 worker processes" % server.port in server.log()
    finally:
        server.stop()


def test_the_cli_flag_sets_the_workers(tmp_path):
    if POSTGRES_URL:
        empty_postgres()
    server = app_server(tmp_path / "data", argv=[sys.executable, os.path.join(ROOT, "app.py"), "--waitress",
                                                 "--workers", "3"]).start()
    try:
        assert eventually(lambda: len(children(server.pid)) == 3)
    finally:
        server.stop()
    assert not children(server.pid)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stopped_server_lets_its_streams_in_flight_end_then_exits(make_app, tmp_path, upstream, token_server,
                                                                    workers):
    app = make_app(CLOCK=time.time)
    pool_account(app, time.time, "a")
    gate = threading.Event()
    upstream.default = Stream(gate=gate)
    server = app_server(tmp_path / "data", WORKERS=workers, SHUTDOWN_GRACE=20, UPSTREAM_URL=upstream.url,
                        OAUTH_TOKEN_URL=token_server.url).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", CODEX, body=json.dumps(CODEX_BODY), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.read1(65536)
        server.proc.send_signal(signal.SIGTERM)
        # It takes no new connection meanwhile: its listening socket is closed, so connecting is refused.
        assert eventually(lambda: not accepts(server.port)) and server.proc.poll() is None
        gate.set()
        assert b"response.completed" in response.read()  # the stream in flight ends whole
        conn.close()
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.stop()
    assert [log.status for log in logs(app)] == ["ok"]


def accepts(port):
    """Whether a request to ``port`` is answered now."""
    try:
        return call(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False
