"""The fake Codex upstream (tests/fixtureapps/upstream.py) itself: what the proxy tests lean on.

Its stream must look like the real backend's, event by event; its scripts
must answer per account, in order; and stop must not hang on a client that
keeps its connection open.
"""
import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import pytest

from fixtureapps.upstream import (COMPACT_BODY, MOMENTARY_ERROR, CacheModel, Compact, Drop, Fail, FakeUpstream,
                                  Stream, prompt_prefixes)
from lb.proxy import balancer

RESPONSES = "/backend-api/codex/responses"
COMPACT = RESPONSES + "/compact"


@pytest.fixture
def up(upstream):
    """The fake upstream (conftest's ``upstream``), shorter."""
    return upstream


@pytest.fixture
def conn(up):
    connection = connect(up)
    yield connection
    connection.close()


def connect(up):
    return http.client.HTTPConnection("127.0.0.1", urlsplit(up.url).port, timeout=10)


def post(conn, path=RESPONSES, account=None, body=None):
    """Send a request and give the response, unread."""
    headers = {"Content-Type": "application/json"}
    if account:
        headers["ChatGPT-Account-Id"] = account
    conn.request("POST", path, json.dumps(body or {"model": "gpt-5-codex", "stream": True}), headers)
    return conn.getresponse()


def parse(data):
    """The SSE events of a body, each checked to repeat its event name as its type."""
    events = []
    for block in data.decode().split("\n\n")[:-1]:
        kind, payload = block.split("\n")
        event = json.loads(payload.removeprefix("data: "))
        assert kind == "event: " + event["type"]
        events.append(event)
    return events


def test_a_stream_is_the_real_backends_sequence_of_events_in_chunks(up, conn):
    response = post(conn, account="acct-a")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("x-request-id") == "req_1"
    events = parse(response.read())
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 5, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if "delta" in e) == "Hello from the fake upstream"
    assert events[0]["response"]["model"] == "gpt-5-codex"
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"] == [] and done["id"] == "resp_1"
    assert done["usage"] == {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 30,
                             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 150}
    recorded = up.requests[0]
    assert (recorded.path, recorded.account, recorded.body["model"]) == (RESPONSES, "acct-a", "gpt-5-codex")
    assert recorded.headers["chatgpt-account-id"] == "acct-a"


def test_each_account_has_its_own_script_used_once_in_order_then_the_default(up, conn):
    limit = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                       "plan_type": "plus", "resets_at": 1790000000}}
    up.plan("acct-a", Fail(429, limit, {"Retry-After": "7"}), Stream(text="second"))
    up.default = Stream(text="default")

    first = post(conn, account="acct-a")
    assert (first.status, first.getheader("Retry-After"), json.loads(first.read())) == (429, "7", limit)
    texts = []
    for account in ("acct-b", "acct-a", "acct-a", None):
        events = parse(post(conn, account=account).read())  # all on one kept-alive connection
        texts.append(events[-2]["item"]["content"][0]["text"])
    assert texts == ["default", "second", "default", "default"]
    assert up.accounts() == ["acct-a", "acct-b", "acct-a", "acct-a", None]


@pytest.mark.parametrize("stream, last", [
    (Stream(end="incomplete"), {"type": "response.incomplete"}),
    (Stream(end="failed", error={"code": "x", "message": "y"}), {"type": "response.failed"}),
    (Stream(end="cut"), {"type": "response.output_text.delta"}),
    (Stream(first="failed"), {"type": "response.failed", "sequence_number": 0}),
    (Stream(first="error", error={"code": "x", "message": "y"}),
     {"type": "error", "sequence_number": 0, "code": "x", "message": "y"}),
])
def test_a_stream_ends_as_planned(up, conn, stream, last):
    up.default = stream
    events = parse(post(conn).read())
    assert last.items() <= events[-1].items()
    assert not any(e["type"] == "response.completed" for e in events)
    if stream.end == "incomplete":
        assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
        assert events[-1]["response"]["usage"]["total_tokens"] == 150
    if "failed" in (stream.end, stream.first):
        assert events[-1]["response"]["error"] == stream.error
    if stream.first:
        assert len(events) == 1


def test_the_text_in_n_deltas_and_extra_headers(up, conn):
    up.default = Stream(text="abcdefg", deltas=3, headers={"x-codex-primary-used-percent": "42"})
    response = post(conn)
    assert response.getheader("x-codex-primary-used-percent") == "42"
    assert [e["delta"] for e in parse(response.read()) if "delta" in e] == ["ab", "cd", "efg"]


def test_a_message_then_two_function_calls_each_with_its_index_call_id_and_arguments(up, conn):
    weather, time_ = '{"city": "Paris", "unit": "celsius"}', '{"zone": "Europe/Paris"}'
    up.default = Stream(text="Let me look", calls=(("get_weather", weather), ("get_time", time_)))
    events = parse(post(conn).read())
    call = ["response.output_item.added", *["response.function_call_arguments.delta"] * 3,
            "response.function_call_arguments.done", "response.output_item.done"]
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", *call, *call, "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    indexed = [e for e in events if "output_index" in e]
    assert [e["output_index"] for e in indexed] == [0] * 8 + [1] * 6 + [2] * 6
    assert {e["item_id"] for e in indexed[:8] if "item_id" in e} == {"msg_1"}
    assert events[-2]["item"] == {"type": "function_call", "id": "fc_1_2", "call_id": "call_2", "name": "get_time",
                                  "arguments": time_, "status": "completed"}
    for index, (item_id, call_id, name, arguments) in enumerate(
            [("fc_1_1", "call_1", "get_weather", weather), ("fc_1_2", "call_2", "get_time", time_)], 1):
        mine = [e for e in indexed if e["output_index"] == index]
        assert mine[0]["item"] == {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                                   "arguments": "", "status": "in_progress"}
        pieces = [e["delta"] for e in mine if e["type"] == "response.function_call_arguments.delta"]
        assert len(pieces) == 3 and all(pieces) and "".join(pieces) == arguments
        assert {e["item_id"] for e in mine[1:-1]} == {item_id}
        assert mine[-2]["arguments"] == arguments
        assert mine[-1]["item"] == {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                                    "arguments": arguments, "status": "completed"}
    assert json.loads(events[-2]["item"]["arguments"]) == {"zone": "Europe/Paris"}
    assert events[-1]["response"]["output"] == []


def test_no_text_sends_no_message_only_the_calls_from_index_0(up, conn):
    up.default = Stream(text="", calls=(("ls", '{"path": "."}'),))
    events = parse(post(conn).read())
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        *["response.function_call_arguments.delta"] * 3, "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert not any(e["type"].startswith(("response.content_part", "response.output_text")) for e in events)
    assert {e["output_index"] for e in events if "output_index" in e} == {0}
    assert all(e["item"]["type"] == "function_call" for e in events if "item" in e)
    assert events[2]["item"]["call_id"] == "call_1"


def test_an_incomplete_stream_with_its_reason_and_reasoning_tokens_in_its_usage(up, conn):
    up.default = Stream(text="Partial", calls=(("f", "{}"),), end="incomplete", incomplete_reason="content_filter",
                        usage=(10, 4, 50), reasoning_tokens=32)
    events = parse(post(conn).read())
    last = events[-1]
    assert last["type"] == "response.incomplete" and not any(e["type"] == "response.completed" for e in events)
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert last["response"]["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                                         "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 32},
                                         "total_tokens": 60}
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(item["type"], item["status"]) for item in done] == [("message", "completed"),
                                                                  ("function_call", "incomplete")]
    assert [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"] == ["{", "}"]


def test_reasoning_tokens_reach_a_completed_streams_usage(up, conn):
    up.default = Stream(reasoning_tokens=7)
    usage = parse(post(conn).read())[-1]["response"]["usage"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 7}
    assert usage["total_tokens"] == 150  # reasoning is part of the output tokens, not added to them


@pytest.mark.parametrize("end, last", [("cut", "response.function_call_arguments.delta"),
                                       ("failed", "response.failed")])
def test_a_cut_or_failed_stream_with_calls_stops_after_the_last_calls_arguments(up, conn, end, last):
    up.default = Stream(calls=(("a", '{"x": 1}'), ("b", '{"y": 2}')), end=end)
    events = parse(post(conn).read())
    assert events[-1]["type"] == last
    done = [e["item"]["call_id"] for e in events if e["type"] == "response.output_item.done" and
            e["item"]["type"] == "function_call"]
    assert done == ["call_1"]  # the message and the first call are done, the last call never is
    assert "".join(e["delta"] for e in events if e.get("item_id") == "fc_1_2") == '{"y": 2}'


def test_events_arrive_one_by_one_while_the_gate_holds_the_end(up, conn):
    gate = threading.Event()
    up.default = Stream(gate=gate)
    response = post(conn)
    seen = b""
    while b"response.output_item.done" not in seen:
        seen += response.readline()  # each line comes as its chunk arrives, before the stream ends
    assert b"response.completed" not in seen
    gate.set()
    assert parse(seen + response.read())[-1]["type"] == "response.completed"


def test_compact_answers_json_even_when_the_script_says_stream(up, conn):
    up.plan("acct-a", Stream(), Compact({"id": "c2"}, status=202, headers={"x-extra": "1"}))
    first = post(conn, COMPACT, "acct-a")
    assert (first.status, first.getheader("Content-Type"), json.loads(first.read())) == (
        200, "application/json", COMPACT_BODY)
    second = post(conn, COMPACT, "acct-a")
    assert (second.status, second.getheader("x-extra"), json.loads(second.read())) == (202, "1", {"id": "c2"})
    assert (up.count(), up.count("/compact"), up.count("/responses")) == (2, 2, 0)


def test_an_unknown_path_is_404_and_a_raw_body_is_kept_as_bytes(up, conn):
    conn.request("POST", "/backend-api/other", b"not json")
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (404, {"detail": "Not Found"})
    recorded = up.requests[0]
    assert (recorded.path, recorded.body, recorded.account) == ("/backend-api/other", b"not json", None)


def test_drop_closes_the_connection_without_an_answer(up, conn):
    up.plan("acct-a", Drop())
    with pytest.raises(http.client.RemoteDisconnected):
        post(conn, account="acct-a")
    conn.close()
    assert post(conn, account="acct-a").status == 200  # a new connection gets the default
    assert up.count() == 2


def test_stop_does_not_wait_for_kept_alive_clients_or_held_streams():
    up = FakeUpstream().start()
    idle, held, slow = connect(up), connect(up), connect(up)
    try:
        post(idle).read()  # the connection stays open, its handler waiting for the next request
        up.plan("held", Stream(gate=threading.Event()))
        post(held, account="held").readline()
        up.plan("slow", Stream(delay=60))
        post(slow, account="slow").readline()
        started = time.monotonic()
        up.stop()
        assert time.monotonic() - started < 2
    finally:
        for connection in (idle, held, slow):
            connection.close()


# -- the cache-aware mode ------------------------------------------------------------------------

def message(role, text):
    return {"type": "message", "role": role,
            "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}]}


def turn_usage(conn, account, instructions, items):
    body = {"model": "gpt-5-codex", "stream": True, "instructions": instructions, "input": items}
    response = post(conn, account=account, body=body)
    assert response.status == 200
    usage = parse(response.read())[-1]["response"]["usage"]
    return usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]


def test_the_cache_model_reports_the_longest_prefix_the_account_served_before(up, conn):
    up.cache = CacheModel()
    up.default = Stream(usage=(1, 1, 7))
    system = "You are a careful coding agent. " * 20
    first = [message("user", "conversation 1: fix the failing test " * 5)]
    second = first + [message("assistant", "Done: the test passes."), message("user", "now add a docstring")]
    sizes = [tokens for _, tokens in prompt_prefixes({"instructions": system, "input": second})]

    assert turn_usage(conn, "acct-a", system, first) == (sizes[1], 0)  # a new account: nothing cached
    assert turn_usage(conn, "acct-a", system, second) == (sizes[3], sizes[1])  # the first turn's whole prompt
    assert turn_usage(conn, "acct-a", system, second) == (sizes[3], sizes[3])  # the same prompt again: all of it
    assert turn_usage(conn, "acct-b", system, second) == (sizes[3], 0)  # the cache is the account's own
    other = [message("user", "conversation 2: something else")]  # the same instructions only
    assert turn_usage(conn, "acct-a", system, other)[1] == sizes[0]
    assert sizes[0] == -(-len(json.dumps(system)) // 4) and sizes[0] < sizes[1] < sizes[2] < sizes[3]
    done = parse(post(conn, account="acct-a").read())[-1]["response"]
    assert done["usage"]["output_tokens"] == 7  # the rest of the usage is the default stream's
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + 7


def test_with_the_cache_model_a_script_still_answers_first_and_compaction_is_unchanged(up, conn):
    up.cache = CacheModel(limit_rate=1.0)  # every request it answers: 429
    up.plan("acct-a", Stream(usage=(5, 4, 3)))
    usage = parse(post(conn, account="acct-a").read())[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (5, 4)
    assert post(conn, COMPACT, "acct-a").read() == json.dumps(COMPACT_BODY).encode()
    assert post(conn, account="acct-a").status == 429
    assert up.cache.limited == 1


def test_the_cache_models_429_is_momentary_for_the_proxy_at_its_seeded_rate(up, conn):
    up.cache = CacheModel(limit_rate=1.0)
    response = post(conn, account="acct-a")
    body = json.loads(response.read())
    assert (response.status, response.getheader("Retry-After"), body) == (429, "1", MOMENTARY_ERROR)
    # The proxy cools the account down for a second and keeps its status: not a usage limit.
    outcome = balancer.after_error(429, body["error"], {"retry-after": "1"}, 1_000_000)
    assert outcome.action == "failover" and outcome.changes["cooldown_until"] == 1_001_000
    assert "status" not in outcome.changes
    assert body["error"]["code"] not in balancer.RATE_LIMIT_CODES + balancer.QUOTA_CODES

    def limited(model, n=2000):
        return [isinstance(model.answer("acct-a", {"input": "hi"}, Stream()), Fail) for _ in range(n)]

    drawn = limited(CacheModel(limit_rate=0.05, seed=3))
    assert drawn == limited(CacheModel(limit_rate=0.05, seed=3))  # the same seed, the same requests limited
    assert 60 <= sum(drawn) <= 140
    assert not any(limited(CacheModel()))
