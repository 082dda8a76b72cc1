"""A fake Codex upstream: ``POST <url>/codex/responses`` streams OpenAI Responses events, ``.../compact`` answers JSON.

Each request is recorded, then answered from its account's script (keyed by
the chatgpt-account-id header, each answer used once, in order) or, once that
is empty, by ``default``. A stream is sent as HTTP/1.1 chunks, one event per
chunk written as soon as it is made, so a client sees the events one by one and
the connection stays open for the next request. ``stop`` opens every gate and
shuts the open connections down, so it never waits on an idle keep-alive client.

With ``cache`` set to a CacheModel, a /codex/responses request the script does
not answer is answered by the model instead: a momentary 429 at its set rate,
else the default stream with the usage of an upstream that keeps a prompt
cache per account (see CacheModel).
"""
import dataclasses
import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fixtureapps.loopback import Loopback

RESPONSES = "/backend-api/codex/responses"
COMPACT = RESPONSES + "/compact"
WHAM_USAGE = "/backend-api/wham/usage"
COMPACT_BODY = {"id": "resp_compact_1", "object": "response.compaction",
                "output": [{"type": "compaction", "encrypted_content": "abc"}],
                "usage": {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": 10, "total_tokens": 60}}
END = b"0\r\n\r\n"  # the empty chunk that ends a chunked body


@dataclass
class Stream:
    text: str = "Hello from the fake upstream"
    usage: tuple = (120, 20, 30)  # input tokens, of which cached, output tokens
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds between events
    first_delay: float = 0.0  # seconds between the headers and the first event
    end: str = "completed"  # or "incomplete", "failed", "cut" (the body ends after the last item's deltas)
    error: dict = field(default_factory=lambda: {"code": "server_error", "message": "boom"})
    first: str = None  # "failed" or "error": that is the first and only event
    gate: threading.Event = None  # awaited (30 s at most) before the terminal event, or a cut body's end
    deltas: int = 0  # the text in this many deltas; 0: one per word
    calls: tuple = ()  # (name, arguments JSON string) function calls, streamed after the text: see _call_events
    reasoning_tokens: int = 0  # the terminal usage's output_tokens_details.reasoning_tokens
    incomplete_reason: str = "max_output_tokens"  # incomplete_details.reason when end == "incomplete"


def usage_payload(plan="plus", primary=(25.0, 1800), secondary=(10.0, 86400), limit_reached=False):
    """A /wham/usage body: each window (used percent, seconds until it resets)."""
    def window(used, after, seconds):
        return {"used_percent": used, "limit_window_seconds": seconds, "reset_after_seconds": after}

    return {"plan_type": plan, "rate_limit": {"allowed": not limit_reached, "limit_reached": limit_reached,
                                              "primary_window": window(*primary, 18000),
                                              "secondary_window": window(*secondary, 604800)},
            "credits": {"has_credits": False, "unlimited": False, "balance": "0"}}


@dataclass
class Usage:
    """An answer of GET /wham/usage."""

    status: int = 200
    body: object = field(default_factory=usage_payload)


@dataclass
class Fail:
    status: int
    body: object = field(default_factory=dict)  # a dict is sent as JSON, bytes as they are
    headers: dict = field(default_factory=dict)


@dataclass
class Compact:
    body: dict = None  # None: COMPACT_BODY
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass
class Drop:
    """Read the request, then close the connection without a word."""


# A momentary limit: 429 with a Retry-After and a code the proxy does not read as a usage limit
# (lb.proxy.balancer: rate_limit_exceeded and usage_limit_reached would mark the account rate_limited).
MOMENTARY_ERROR = {"error": {"type": "rate_limit_error", "code": "too_many_requests", "param": None,
                             "message": "Too many requests at once; please try again in 1s"}}


def _tokens(part):
    """The token count of one prompt part (the instructions, an input item): its JSON's characters / 4, rounded up."""
    if part in ("", None):
        return 0
    return -(-len(json.dumps(part, sort_keys=True, separators=(",", ":"))) // 4)


def prompt_prefixes(body):
    """The prefixes of a Responses body's prompt, the instructions then each input item: [(digest, tokens)], each
    digest covering the whole prefix (a chain), tokens counted from the prompt's start."""
    body = body if isinstance(body, dict) else {}
    items = body.get("input", [])
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}] \
        if isinstance(items, str) else items if isinstance(items, list) else []
    digest, total, prefixes = hashlib.sha256(), 0, []
    for part in [body.get("instructions") or "", *items]:
        digest.update(json.dumps(part, sort_keys=True).encode() + b"\0")
        total += _tokens(part)
        prefixes.append((digest.copy().hexdigest(), total))
    return prefixes


class CacheModel:
    """An upstream with a prompt cache per account, and momentary rate limits.

    Each account (the chatgpt-account-id) remembers every prompt prefix it has
    served (prompt_prefixes: the instructions, then each input item, chained);
    a request's usage is ``input_tokens`` its prompt's size (characters / 4)
    and ``cached_tokens`` the size of the longest of its prefixes that account
    has served before. Nothing expires. ``limit_rate`` of the requests (drawn
    from a Random seeded with ``seed``) are answered a momentary 429 instead:
    ``Retry-After: 1`` and MOMENTARY_ERROR, which the proxy reads as a short
    cooldown; they are counted in ``limited`` and cache nothing.
    """

    def __init__(self, limit_rate=0.0, seed=0):
        self.limit_rate = limit_rate
        self.limited = 0
        self._random = random.Random(seed)
        self._seen = {}  # account -> the prefix digests it has served

    def usage(self, account, body):
        """(input tokens, cached tokens) of serving ``body`` on ``account``, which remembers its prefixes."""
        prefixes = prompt_prefixes(body)
        seen = self._seen.setdefault(account, set())
        cached = next((tokens for digest, tokens in reversed(prefixes) if digest in seen), 0)
        seen.update(digest for digest, _ in prefixes)
        return (prefixes[-1][1] if prefixes else 0), cached

    def answer(self, account, body, default):
        """A momentary 429 (at ``limit_rate``), else ``default`` with this request's usage."""
        if self.limit_rate and self._random.random() < self.limit_rate:
            self.limited += 1
            return Fail(429, MOMENTARY_ERROR, {"Retry-After": "1"})
        inputs, cached = self.usage(account, body)
        return dataclasses.replace(default, usage=(inputs, cached, default.usage[2]))


@dataclass
class Recorded:
    path: str
    headers: dict  # names lower-cased
    body: object  # the parsed JSON, else the raw bytes
    account: str  # the chatgpt-account-id header, or None
    raw: bytes = b""  # the body as received


def _slices(text, n):
    """``text`` in ``n`` even slices that join back to it exactly."""
    return [text[len(text) * i // n:len(text) * (i + 1) // n] for i in range(n)]


def _pieces(stream):
    """The text cut into deltas that join back to it exactly: ``deltas`` even slices, else one per word."""
    text, n = stream.text, stream.deltas
    if n > 0:
        return _slices(text, n)
    return re.findall(r"\s*\S+\s*", text) or [text]


def call_id(k):
    """The call_id of a stream's k-th function call (1, 2, ...): the same in every stream."""
    return f"call_{k}"


def _message_events(stream, n, index):
    """A message item's events: (those up to its last delta, those that close it given the item status)."""
    item = {"id": f"msg_{n}", "type": "message", "role": "assistant"}
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    opening = [("response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "content": []}}),
               ("response.content_part.added", {**where, "part": {"type": "output_text", "text": ""}})]
    opening += [("response.output_text.delta", {**where, "delta": piece}) for piece in _pieces(stream)]
    part = {"type": "output_text", "text": stream.text, "annotations": []}
    return opening, lambda status: [
        ("response.output_text.done", {**where, "text": stream.text}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": index, "item": {**item, "status": status, "content": [part]}})]


def _call_events(n, k, index, name, arguments):
    """The k-th function call's events (item id fc_<n>_<k>, call id call_<k>), its arguments in up to 3 deltas."""
    item = {"type": "function_call", "id": f"fc_{n}_{k}", "call_id": call_id(k), "name": name}
    where = {"item_id": item["id"], "output_index": index}
    opening = [("response.output_item.added",
                {"output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}})]
    opening += [("response.function_call_arguments.delta", {**where, "delta": piece})
                for piece in _slices(arguments, max(1, min(3, len(arguments))))]
    return opening, lambda status: [
        ("response.function_call_arguments.done", {**where, "arguments": arguments}),
        ("response.output_item.done", {"output_index": index, "item": {**item, "arguments": arguments,
                                                                        "status": status}})]


def _events(stream, n, model):
    """The stream's events as (type, fields); the last one is terminal unless the stream is cut.

    The output items, in order: the message (none when the text is ""), then each of ``calls``, their
    output_index counting from 0. Each item but the last is done "completed"; the last one is done with the
    response's status ("completed" or "incomplete"), or not at all: a "failed" or "cut" stream ends after its
    deltas.
    """
    response = {"id": f"resp_{n}", "object": "response", "created_at": int(time.time()),
                "status": "in_progress", "model": model, "output": []}
    failed = ("response.failed", {"response": {**response, "status": "failed", "error": stream.error}})
    if stream.first == "failed":
        return [failed]
    if stream.first == "error":
        return [("error", stream.error)]
    items = [_message_events(stream, n, 0)] if stream.text else []
    items += [_call_events(n, k, len(items) + k - 1, name, arguments)
              for k, (name, arguments) in enumerate(stream.calls, 1)]
    events = [("response.created", {"response": response}),
              ("response.in_progress", {"response": response})]
    status = "completed" if stream.end == "completed" else "incomplete"
    for i, (opening, closing) in enumerate(items):
        events += opening
        if i < len(items) - 1:
            events += closing("completed")
        elif stream.end not in ("failed", "cut"):
            events += closing(status)  # the last item is the one an incomplete answer leaves unfinished
    if stream.end == "failed":
        return events + [failed]
    if stream.end == "cut":
        return events
    inputs, cached, outputs = stream.usage
    usage = {"input_tokens": inputs, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": outputs,
             "output_tokens_details": {"reasoning_tokens": stream.reasoning_tokens}, "total_tokens": inputs + outputs}
    last = {**response, "status": status, "usage": usage}  # output stays empty, as with store: false
    if status == "incomplete":
        last["incomplete_details"] = {"reason": stream.incomplete_reason}
    return events + [(f"response.{status}", {"response": last})]


def _chunk(seq, kind, fields):
    """One SSE event, framed as one HTTP chunk so that it can be written on its own."""
    data = json.dumps({"type": kind, "sequence_number": seq, **fields}, separators=(",", ":"))
    event = f"event: {kind}\ndata: {data}\n\n".encode()
    return b"%X\r\n%s\r\n" % (len(event), event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small event chunks go out at once, not after a delayed ACK

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            pass  # the client went away (or stop shut the connection): nothing left to say

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.partition("?")[0]
        n, body, answer = self.server.upstream._next(self.path, headers, raw, path in (RESPONSES, COMPACT))
        if answer is None:
            self._json(n, 404, {"detail": "Not Found"}, {})
        elif isinstance(answer, Drop):
            self.close_connection = True
        elif isinstance(answer, Stream) and path == RESPONSES:
            self._stream(n, answer, body.get("model") if isinstance(body, dict) else None)
        else:
            answer = Compact() if isinstance(answer, Stream) else answer
            self._json(n, answer.status, COMPACT_BODY if answer.body is None else answer.body, answer.headers)

    def do_GET(self):
        headers = {name.lower(): value for name, value in self.headers.items()}
        n, answer = self.server.upstream._next_usage(self.path, headers)
        if answer is None:
            self._json(n, 404, {"detail": "Not Found"}, {})
        else:
            self._json(n, answer.status, answer.body, {})

    def _head(self, n, status, headers):
        self.send_response_only(status)  # no Date, Server or log line: cheaper
        for name, value in {"x-request-id": f"req_{n}", **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _json(self, n, status, body, headers):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._head(n, status, {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers})
        self.wfile.write(data)

    def _stream(self, n, stream, model):
        chunks = [_chunk(seq, kind, fields) for seq, (kind, fields) in enumerate(_events(stream, n, model))]
        if stream.end == "cut" and stream.first is None:
            chunks.append(END)
        else:
            chunks[-1] += END  # the terminal event and the end of the body in one write
        self._head(n, 200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked", **stream.headers})
        for i, chunk in enumerate(chunks):
            pause = stream.delay if i else stream.first_delay
            if pause:
                self.server.upstream._stopped.wait(pause)  # a sleep that stop cuts short
            if stream.gate is not None and i == len(chunks) - 1:
                stream.gate.wait(timeout=30)
            self.wfile.write(chunk)  # unbuffered: each event goes out now

    def log_message(self, *args):
        pass  # quiet: the test reads upstream.requests instead


class _Server(ThreadingHTTPServer):
    """Keeps the open connections, so that stop can shut down those a client keeps alive."""

    daemon_threads = True
    request_queue_size = 128  # a benchmark opens 64 streams at once

    def __init__(self, upstream):
        self.upstream = upstream
        self.open = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        with self.open_lock:  # here, in the accepting thread, so none is missed once shutdown() returns
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def server_close(self):
        """Shut the connections clients keep alive down too, then close the socket (and join the handlers)."""
        with self.open_lock:
            for request in self.open:
                try:
                    request.shutdown(socket.SHUT_RDWR)  # a handler blocked reading the next request sees the end
                except OSError:
                    pass
        super().server_close()


class FakeUpstream(Loopback):
    def __init__(self):
        self.requests = []  # Recorded, in arrival order
        self.default = Stream()
        self.cache = None  # a CacheModel: it answers the responses the scripts do not
        self.usage = {}  # account id -> its /wham/usage answers not used yet (Usage); then USAGE
        self._scripts = {}  # account id -> answers not used yet
        self._lock = threading.Lock()
        self._gates = []
        self._stopped = threading.Event()

    @property
    def url(self):
        return self.base_url + "/backend-api"

    def plan(self, account, *answers):
        """Append answers to the script of requests carrying this chatgpt-account-id."""
        with self._lock:
            self._scripts.setdefault(account, []).extend(answers)

    def count(self, path_suffix=None):
        """How many requests came, or only those whose path ends with ``path_suffix``."""
        with self._lock:
            return sum(1 for r in self.requests if path_suffix is None or r.path.endswith(path_suffix))

    def accounts(self):
        """The chatgpt-account-id of each request, in order (None where it had none)."""
        with self._lock:
            return [r.account for r in self.requests]

    def _next(self, path, headers, raw, scripted):
        """Record a request; give its number, its body and, when ``scripted``, its answer."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        account = headers.get("chatgpt-account-id")
        with self._lock:
            self.requests.append(Recorded(path, headers, body, account, raw))
            if not scripted:
                return len(self.requests), body, None
            script = self._scripts.get(account)
            if script:
                answer = script.pop(0)
            elif self.cache is not None and path.partition("?")[0] == RESPONSES:
                answer = self.cache.answer(account, body, self.default)
            else:
                answer = self.default
            if getattr(answer, "gate", None) is not None:
                self._gates.append(answer.gate)
                if self._stopped.is_set():  # stop has opened the gates already: this one must not hold it up
                    answer.gate.set()
            return len(self.requests), body, answer

    def _next_usage(self, path, headers):
        """Record a GET; its number and, for /wham/usage, its answer."""
        account = headers.get("chatgpt-account-id")
        with self._lock:
            self.requests.append(Recorded(path, headers, None, account, b""))
            if path.partition("?")[0] != WHAM_USAGE:
                return len(self.requests), None
            script = self.usage.get(account)
            return len(self.requests), script.pop(0) if script else Usage()

    def start(self):
        return self.serve(_Server(self), "fake-upstream")

    def stop(self):
        with self._lock:
            self._stopped.set()
            for gate in self._gates:
                gate.set()
        self.shutdown()
