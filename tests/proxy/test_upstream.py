"""lb.proxy.upstream: the upstream's SSE stream cut into events as they arrive, usage and errors read from them,
and the pooled client streaming from a small server on loopback."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from lb.proxy import upstream


def sse(kind, data, newline=b"\n"):
    return (b"event: " + kind.encode() + newline + b"data: " + json.dumps(data).encode() + newline + newline)


CREATED = sse("response.created", {"type": "response.created", "response": {"id": "resp_1"}})
DELTA = sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hel"})
COMPLETED = sse("response.completed", {"type": "response.completed", "response": {
    "id": "resp_1", "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 200},
                              "output_tokens": 34, "total_tokens": 1234}}})
STREAM = CREATED + DELTA + DELTA + COMPLETED


def events(chunks, **parsing):
    """upstream.batches, one event at a time."""
    for batch in upstream.batches(chunks, **parsing):
        yield from batch


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_a_stream_cut_anywhere_gives_the_same_events_byte_for_byte(size):
    chunks = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
    found = list(events(chunks))
    assert [e.type for e in found] == ["response.created", "response.output_text.delta",
                                       "response.output_text.delta", "response.completed"]
    assert b"".join(e.raw for e in found) == STREAM  # passed on exactly as received


def test_only_the_first_and_the_terminal_events_are_parsed():
    created, delta, _, completed = events([STREAM])
    assert created.data["response"]["id"] == "resp_1"
    assert delta.data is None  # deltas pass through unread
    assert completed.data["type"] == "response.completed"


def test_crlf_lines_and_a_last_event_without_its_blank_line():
    stream = sse("response.created", {"type": "response.created"}, b"\r\n") + COMPLETED.rstrip(b"\n")
    found = list(events([stream[:5], stream[5:]]))
    assert [e.type for e in found] == ["response.created", "response.completed"]
    assert upstream.usage_of(upstream.response_of(found[1])) == (1200, 200, 34)


def test_an_event_without_an_event_line_is_known_by_its_data():
    [event] = events([b'data: {"type": "error", "code": "server_error", "message": "boom"}\n\n'])
    assert (event.type, upstream.error_of(event)["code"]) == ("error", "server_error")


@pytest.mark.parametrize("event, usage", [
    (COMPLETED, (1200, 200, 34)),
    (sse("response.incomplete", {"type": "response.incomplete", "response": {
        "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 5, "output_tokens": 9}}}),
     (5, 0, 9)),
    (sse("response.completed", {"type": "response.completed", "response": {}}), (0, 0, 0)),
    (sse("response.completed", {"type": "response.completed", "response": "not an object"}), (0, 0, 0)),
    (sse("response.completed", {"type": "response.completed", "response": {"usage": {"input_tokens": -1,
                                                                                       "output_tokens": True}}}),
     (0, 0, 0)),
])
def test_usage_comes_from_the_terminal_event(event, usage):
    [parsed] = events([event])
    assert upstream.usage_of(upstream.response_of(parsed)) == usage


def test_a_failed_response_carries_its_error():
    failed = sse("response.failed", {"type": "response.failed", "response": {
        "error": {"code": "rate_limit_exceeded", "message": "try again in 2s"}}})
    [event] = events([failed])
    assert upstream.error_of(event) == {"code": "rate_limit_exceeded", "message": "try again in 2s"}
    assert upstream.error_of(next(events([DELTA], parse_first=False))) is None


# -- the client, against a server on loopback ---------------------------------------------------------

class Streaming(BaseHTTPRequestHandler):
    """Answers every POST with the created event, then waits for the test's gate, then the rest."""

    def do_POST(self):
        self.server.seen.append((self.path, self.rfile.read(int(self.headers["Content-Length"])),
                                 self.headers.get("chatgpt-account-id")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(CREATED)
        self.wfile.flush()
        if self.server.gate.wait(10):
            self.wfile.write(DELTA + COMPLETED)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    server.seen, server.gate, server.daemon_threads = [], threading.Event(), True
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server
    server.gate.set()
    server.shutdown()
    server.server_close()
    thread.join()


def test_events_reach_the_caller_as_they_arrive_not_when_the_stream_ends(fake):
    client = upstream.Upstream(f"http://127.0.0.1:{fake.server_address[1]}/backend-api", read_timeout=10)
    answer = client.open("/codex/responses", b'{"model": "gpt-5.3-codex"}', {"chatgpt-account-id": "ws-1"})
    stream = events(upstream.chunks(answer))
    first = next(stream)  # the server is still waiting for the gate
    assert first.type == "response.created" and not fake.gate.is_set()
    fake.gate.set()
    assert [e.type for e in stream] == ["response.output_text.delta", "response.completed"]
    answer.release_conn()
    assert fake.seen == [("/backend-api/codex/responses", b'{"model": "gpt-5.3-codex"}', "ws-1")]


def test_a_stream_silent_past_the_read_timeout_raises(fake):
    client = upstream.Upstream(f"http://127.0.0.1:{fake.server_address[1]}", read_timeout=0.2)
    answer = client.open("codex/responses", b"{}", {})
    stream = events(upstream.chunks(answer))
    assert next(stream).type == "response.created"
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        next(stream)
    answer.release_conn()
