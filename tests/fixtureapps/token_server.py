"""A fake OAuth token endpoint: records every request body and answers per a script.

``server.script`` is a list of Answer, used one per request in order; once it
is empty, every request gets ``server.default``. An answer with a ``gate``
(a threading.Event) waits for it before answering, so a test can hold a
refresh in flight. ``stop`` opens every gate, closes the socket and joins the
threads.
"""
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fixtureapps.loopback import Loopback


@dataclass
class Answer:
    status: int = 200
    body: object = field(default_factory=dict)  # a dict is sent as JSON, bytes as they are
    gate: threading.Event = None


class TokenServer(Loopback):
    def __init__(self):
        self.requests = []  # (path, parsed JSON body or the raw bytes, headers)
        self.script = []
        self.default = Answer(500, {"error": {"code": "no_answer_scripted"}})
        self.arrived = threading.Event()  # set as each request comes in (a test may clear it)
        self._lock = threading.Lock()
        self._gates = []

    @property
    def url(self):
        return self.base_url + "/oauth/token"

    @property
    def bodies(self):
        """The JSON bodies received, in order."""
        return [body for _, body, _ in self.requests]

    def answer(self, *answers):
        """Append answers to the script."""
        self.script.extend(answers)

    def _next(self, path, raw, headers):
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        with self._lock:
            self.requests.append((path, body, headers))
            answer = self.script.pop(0) if self.script else self.default
            if answer.gate is not None:
                self._gates.append(answer.gate)
        self.arrived.set()
        return answer

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = server._next(self.path, raw, dict(self.headers))
                if answer.gate is not None:
                    answer.gate.wait(timeout=30)
                data = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a timeout test)
                    pass

            def log_message(self, *args):
                pass  # quiet: the test reads self.requests instead

        return self.serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "token-server")

    def stop(self):
        for gate in self._gates:
            gate.set()
        self.shutdown()
