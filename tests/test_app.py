"""app.main, the entry point, and the real server it starts.

main() serves on the loopback default or what LB_* says, and exits 2 with one line
naming a bad variable. The bootstrap token is logged only while no password is set;
a password never reaches a log. Then waitress in its own process, spoken to over
HTTP: an acknowledged batch survives kill -9; concurrent writers in several
processes wait for each other instead of failing, and never store a requestId
twice; errors from the real server are JSON.
"""
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import app as entry
from helpers import BOOTSTRAP, PASSWORD, POSTGRES_URL, change, empty_postgres, error, login, setup_password

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "server-test-ingest-token"


# -- main() ----------------------------------------------------------------------------------

class FakeServe:
    """Stands in for waitress.serve and records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, app, **options):
        self.calls.append((app, options))


def test_main_serves_on_the_loopback_default(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    serve = FakeServe()
    assert entry.main(argv=[], serve=serve) == 0
    (app, options), = serve.calls
    assert (options["host"], options["port"], options["threads"]) == ("127.0.0.1", 2455, 8)
    assert options["max_request_body_size"] > app.config["MAX_BODY_BYTES"]
    assert capsys.readouterr().err == ""


def test_main_honours_host_port_and_threads(monkeypatch, tmp_path):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LB_HOST", "0.0.0.0")
    monkeypatch.setenv("LB_PORT", "8080")
    monkeypatch.setenv("LB_THREADS", "4")
    serve = FakeServe()
    assert entry.main(argv=["--waitress"], serve=serve) == 0
    (_, options), = serve.calls
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

def test_the_bootstrap_token_is_logged_only_while_no_password_is_set(make_app, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app()
    assert [r.levelno for r in caplog.records if BOOTSTRAP in r.getMessage()] == [logging.WARNING]
    setup_password(app.test_client())
    caplog.clear()
    again = make_app()
    assert again.test_client().get("/api/dashboard-auth/session").get_json()["isPasswordConfigured"] is True
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

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, payload=None, headers=None):
    headers = dict(headers or {})
    body = None
    if payload is not None:
        body = json.dumps(payload)
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, json.loads(data) if data else None


class Server:
    def __init__(self, data_dir):
        self.data_dir, self.port, self.proc = str(data_dir), free_port(), None
        self.log_path = os.path.join(os.path.dirname(self.data_dir), "server.log")

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
        env.update(LB_DATA_DIR=self.data_dir, LB_PORT=str(self.port), LB_INGEST_TOKEN=TOKEN, LB_THREADS="4")
        if POSTGRES_URL:
            env["LB_DATABASE_URL"] = POSTGRES_URL
        # The log goes to a file: a pipe nobody reads would stall the server once full.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--waitress"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call(self.port, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            raise AssertionError("server did not start: " + log.read())

    def kill_hard(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path):
    if POSTGRES_URL:
        empty_postgres()
    srv = Server(tmp_path / "data").start()
    yield srv
    srv.stop()


def ingest_over_http(port, items):
    """POST one batch to the real server with its ingest token: (status, body)."""
    return call(port, "POST", "/api/request-logs", {"requests": items}, {"Authorization": f"Bearer {TOKEN}"})


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


def test_errors_from_the_real_server_are_json(server):
    status, body = call(server.port, "GET", "/no/such/path")
    assert (status, body["error"]["code"]) == (404, "not_found")
    big = {"requests": [{"model": "x" * 100}] * 20000}
    status, body = call(server.port, "POST", "/api/request-logs", big)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
