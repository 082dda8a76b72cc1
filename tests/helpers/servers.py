"""The real server, ``app.py --waitress`` in its own process on loopback: for the tests and the benchmarks."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

from helpers.data import INGEST, POSTGRES_URL, ROOT
from helpers.http import COOKIE

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, payload=None, headers=None):
    """One request over a fresh connection: (status, parsed JSON body or None)."""
    status, body, _ = call_with_cookie(port, method, path, payload, headers)
    return status, body


def call_with_cookie(port, method, path, payload=None, headers=None):
    """Like ``call``, plus the headers that present the session cookie it set: (status, body, headers)."""
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
    cookies = [h.split(";")[0] for h in response.headers.get_all("Set-Cookie") or [] if h.startswith(COOKIE + "=")]
    return response.status, json.loads(data) if data else None, {"Cookie": cookies[-1]} if cookies else {}


def wait_for(port, seconds=30):
    """Whether a server on ``port`` answers /healthz with 200 within ``seconds`` (polling a process starting up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", "/healthz")[0] == 200:
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """``app.py --waitress`` in its own process on a loopback port (a free one unless given), its log to a file;
    ``settings`` are its LB_* variables, the only ones it sees. ``argv``: another command that serves the same
    way (the benchmark's profiling wrapper); a setting of None is left to the server's default. The tests start
    theirs with ``app_server``."""

    def __init__(self, data_dir, port=None, log_path=None, argv=None, **settings):
        self.data_dir, self.port, self.proc = str(data_dir), port or free_port(), None
        self.log_path = log_path or os.path.join(os.path.dirname(self.data_dir), f"server-{self.port}.log")
        self.argv = argv or [sys.executable, os.path.join(ROOT, "app.py"), "--waitress"]
        self.settings = settings

    def start(self, command_prefix=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
        env.update(LB_DATA_DIR=self.data_dir, LB_PORT=str(self.port))
        env.update({f"LB_{name}": str(value) for name, value in self.settings.items() if value is not None})
        # The log goes to a file: a pipe nobody reads would stall the server once full.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*command_prefix, *self.argv], env=env, stdout=subprocess.DEVNULL, stderr=log)
        if wait_for(self.port):
            return self
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("server did not start: " + self.log())

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def kill_hard(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def eventually(check, seconds=30):
    """Whether ``check()`` holds within ``seconds``: for what a server process does on its own time (a worker
    restarted, a gone client noticed at its next write)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def children(pid):
    """The pids of a process's living children (a server's workers)."""
    found = []
    for process in os.listdir("/proc"):
        if process.isdigit():
            try:
                with open(f"/proc/{process}/stat", encoding="ascii", errors="replace") as f:
                    state, parent = f.read().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue  # gone meanwhile
            if int(parent) == pid and state != "Z":
                found.append(int(process))
    return sorted(found)


# A loopback address nothing listens on (the discard port): the default issuer of a test, so that no test
# ever reaches auth.openai.com.
LOOPBACK_NOWHERE = "http://127.0.0.1:9"


def app_server(data_dir, **settings):
    """A Server for a test: four threads, the tests' ingest token, three seconds' grace when it is stopped, no
    usage poll nor pruner (a test that wants one says so), an OAuth issuer nowhere (LOOPBACK_NOWHERE) unless the test
    names its fake one, and in the PostgreSQL pass its database."""
    defaults = {"THREADS": 4, "INGEST_TOKEN": INGEST, "SHUTDOWN_GRACE": 3, "USAGE_POLL_SECONDS": 0,
                "PRUNE_INTERVAL_SECONDS": 0, "OAUTH_ISSUER": LOOPBACK_NOWHERE,
                **({"DATABASE_URL": POSTGRES_URL} if POSTGRES_URL else {})}
    return Server(data_dir, **{**defaults, **settings})
