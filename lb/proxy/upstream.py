"""The pooled HTTP client to the Codex upstream, and its SSE stream read event by event. No Flask inside.

``Upstream.open`` sends a request and returns the answer unread; ``batches``
cuts its body into SSE events as the bytes arrive, each passed on exactly as
received (those that arrived together, together), and parses the JSON of only the events that matter (the first one,
and the terminal ones), never the stream of deltas.
"""
import json
from typing import NamedTuple, Optional

import urllib3

# The SSE events the proxy reads, named once. Every other event (the deltas) passes through unparsed.
COMPLETED = "response.completed"
INCOMPLETE = "response.incomplete"
FAILED = "response.failed"
ERROR = "error"
OUTPUT_ITEM_DONE = "response.output_item.done"
# The deltas a Chat Completions stream is made of (lb.proxy.chat): parsed only for it.
OUTPUT_ITEM_ADDED = "response.output_item.added"
OUTPUT_TEXT_DELTA = "response.output_text.delta"
REFUSAL_DELTA = "response.refusal.delta"
ARGUMENTS_DELTA = "response.function_call_arguments.delta"
TERMINAL = (COMPLETED, INCOMPLETE, FAILED)  # the response is over
ENDING = TERMINAL + (ERROR,)  # what a client sees last of a stream: its outcome is read from it
PARSED = frozenset(ENDING)  # events whose JSON is read (and the first one)


class Event(NamedTuple):
    """One SSE event: its bytes as received (separator included), its type, its JSON when it was parsed."""

    raw: bytes
    type: Optional[str]
    data: Optional[dict]


def _type(block):
    """The ``event:`` name of an SSE block, else the ``"type"`` of its data."""
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
    return None


def _data(block):
    lines = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        data = json.loads(b"\n".join(lines))
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def batches(chunks, parse_first=True, parse=PARSED):
    """Cut an iterable of byte chunks into Events as soon as each one is whole (a blank line ends it),
    given as a list per chunk: the events that chunk completed, to be passed on together.

    Line endings may be LF or CRLF; an event may be split across chunks. The
    JSON of an event is parsed when its type is in ``parse`` (by default the
    terminal ones and ``error``), or it is the first event (``parse_first``);
    a final event without its blank line is still given.
    """
    buffer = b""
    first = parse_first
    for chunk in chunks:
        buffer += chunk
        done = []
        while True:
            end, width = _boundary(buffer)
            if end < 0:
                break
            raw, buffer = buffer[:end + width], buffer[end + width:]
            done.append(_event(raw, first, parse))
            first = False
        if done:
            yield done
    if buffer.strip():
        yield [_event(buffer, first, parse)]


def _boundary(buffer):
    """(index, width) of the first blank line in ``buffer``, or (-1, 0)."""
    found = [(i, w) for i, w in ((buffer.find(b"\n\n"), 2), (buffer.find(b"\r\n\r\n"), 4)) if i >= 0]
    return min(found) if found else (-1, 0)


def _event(raw, parse_first, parse):
    block = raw.replace(b"\r\n", b"\n").strip(b"\n")
    kind = _type(block)
    if not (parse_first or kind is None or kind in parse):
        return Event(raw, kind, None)  # a delta: passed on, never parsed
    data = _data(block)
    if kind is None and data is not None and isinstance(data.get("type"), str):
        kind = data["type"]
    return Event(raw, kind, data)


class Usage(NamedTuple):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


def response_of(event):
    """The ``response`` object an event carries (a terminal one does), else {}."""
    response = (event.data or {}).get("response")
    return response if isinstance(response, dict) else {}


def usage_of(response):
    """The tokens in a response object's ``usage`` (a terminal event's, or a compaction's answer): zeros where
    the upstream gave none."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return Usage()

    def count(value):
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    details = usage.get("input_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(count(usage.get("input_tokens")), cached, count(usage.get("output_tokens")))


def error_of(event):
    """The error object of a ``response.failed`` or ``error`` event (None for others)."""
    if event.type == ERROR:
        return event.data or {}
    error = response_of(event).get("error")
    return error if isinstance(error, dict) else None


def failure_code(exc):
    """The log's code for a urllib3 error on the way to or from the upstream: silent too long, or unreachable."""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "stream_idle_timeout"
    return "upstream_unavailable"


class Upstream:
    """One connection pool to the upstream, shared by every request thread (urllib3 is thread-safe)."""

    def __init__(self, base_url, connect_timeout=10.0, read_timeout=300.0, maxsize=32):
        self.base_url = base_url.rstrip("/")
        self.prefix = urllib3.util.parse_url(self.base_url).path or ""
        # read_timeout bounds the silence between two reads: the idle time between events.
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # One host: its connection pool itself, without a PoolManager's per-request URL routing.
        # No retries: a request may have reached the upstream and been counted against the account.
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=maxsize, block=False, retries=False)

    def open(self, path, body, headers):
        """POST ``body`` (bytes) to ``<base>/<path>``; the answer, its body still unread (see ``chunks``)."""
        return self.pool.urlopen("POST", f"{self.prefix}/{path.lstrip('/')}", body=body, headers=headers,
                                 timeout=self.timeout, preload_content=False, redirect=False, retries=False)

    def get(self, path, headers):
        """GET ``<base>/<path>`` (the usage endpoint); the answer, read whole."""
        return self.pool.urlopen("GET", f"{self.prefix}/{path.lstrip('/')}", headers=headers, timeout=self.timeout,
                                 redirect=False, retries=False)


def chunks(answer, size=65536):
    """The body of an ``open`` answer as it arrives: whatever bytes are there, never waiting to fill ``size``."""
    while chunk := answer.read1(size):
        yield chunk
