"""lb.proxy.chat and POST /v1/chat/completions (contract 14): the whole request mapping, one answer and the
chunk stream made from the upstream's events, bad input refused before anything goes upstream, and model
aliases with a reasoning effort on every request route."""
import json

import pytest

from fixtureapps.upstream import Fail, Stream
from helpers.data import logs, pool_account
from helpers.http import CODEX, V1, openai_error
from lb.proxy import chat
from lb.proxy.responses import Refused
from lb.proxy.upstream import Event

CHAT = "/v1/chat/completions"
MODEL = "gpt-5.3-codex"


def event(kind, **data):
    return Event(b"", kind, {"type": kind, **data})


def chunks_of(data):
    """The parsed data: lines of a chunk stream, "[DONE]" kept as it is."""
    found = []
    for block in data.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            payload = block[6:]
            found.append(payload if payload == "[DONE]" else json.loads(payload))
    return found


# -- the request ---------------------------------------------------------------------------------

def test_every_part_of_a_chat_request_has_its_place_in_the_responses_body():
    body = {
        "model": MODEL, "stream": True, "n": 1, "max_tokens": 10, "max_completion_tokens": 10, "temperature": 0.3,
        "top_p": 0.9, "store": True, "stream_options": {"include_usage": True}, "seed": 7, "frequency_penalty": 1,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use "}, {"type": "text", "text": "tools."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {"role": "assistant", "content": "Let me look.",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up",
                                                    "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}}, "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"},
                                                                   "strict": True}},
        "reasoning_effort": "low", "prompt_cache_key": "conv-1", "user": "ann",
    }
    assert chat.for_upstream(body) == {
        "model": MODEL, "instructions": "Be brief.\n\nUse tools.", "store": False, "stream": True,
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "auto"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\":\"x\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
        ],
        "tools": [{"type": "function", "name": "lookup", "description": "Look up", "parameters": {"type": "object"},
                   "strict": True}],
        "tool_choice": {"type": "function", "name": "lookup"}, "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"}, "prompt_cache_key": "conv-1", "user": "ann",
    }


def test_json_object_and_an_alias_effort_over_reasoning_effort():
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"},
            "reasoning_effort": "low", "tool_choice": "required"}
    shaped = chat.for_upstream(body, effort="high")
    assert (shaped["text"], shaped["reasoning"], shaped["tool_choice"], shaped["instructions"]) == (
        {"format": {"type": "json_object"}}, {"effort": "high"}, "required", "")


@pytest.mark.parametrize("body, named", [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": ["hi"]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": True}, "n"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}, "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": 3}, "reasoning_effort"),
])
def test_what_cannot_be_translated_is_refused_naming_it(body, named):
    with pytest.raises(Refused) as refused:
        chat.for_upstream({"model": MODEL, **body})
    assert str(refused.value).startswith(named + " ")


# -- one answer ---------------------------------------------------------------------------------

USAGE = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40}, "output_tokens": 30,
         "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 130}
CHAT_USAGE = {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
              "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 12}}


def test_an_answer_with_text_and_tool_calls():
    response = {"status": "completed", "usage": USAGE, "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": "Calling."}]},
        {"type": "function_call", "call_id": "call_9", "name": "f", "arguments": "{}"}]}
    answer = chat.completion(response, MODEL, 1700000000)
    assert answer["id"].startswith("chatcmpl-") and (answer["object"], answer["created"], answer["model"]) == (
        "chat.completion", 1700000000, MODEL)
    assert answer["choices"] == [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Calling.", "refusal": None,
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]
    assert answer["usage"] == CHAT_USAGE


@pytest.mark.parametrize("response, finish, content", [
    ({"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]},
     "stop", "Hi"),
    ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []}, "length", ""),
    ({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": []}, "content_filter",
     ""),
    ({"status": "completed", "output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": ""}]},
     "tool_calls", None),
])
def test_the_finish_reason_and_content_of_an_answer(response, finish, content):
    [choice] = chat.completion(response, MODEL, 0)["choices"]
    assert (choice["finish_reason"], choice["message"]["content"]) == (finish, content)


# -- the chunk stream ---------------------------------------------------------------------------

def call_events(index, call_id, name, pieces, item_id):
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name}
    return [event("response.output_item.added", output_index=index, item={**item, "arguments": ""}),
            *[event("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=piece)
              for piece in pieces],
            event("response.output_item.done", output_index=index, item={**item, "arguments": "".join(pieces)})]


def test_the_chunks_of_text_and_two_tool_calls_then_usage_and_done():
    shape = chat.Chunks(MODEL, 1700000000, include_usage=True)
    batches = [
        [event("response.created", response={})],
        [event("response.output_text.delta", delta="Let me "), event("response.output_text.delta", delta="check.")],
        call_events(1, "call_a", "lookup", ['{"q":', '"x"}'], "fc_1"),
        call_events(2, "call_b", "other", [], "fc_2")[:1] + call_events(2, "call_b", "other", [], "fc_2")[1:],
        [event("response.output_item.done", output_index=2, item={"type": "function_call", "id": "fc_2",
                                                                   "call_id": "call_b", "name": "other",
                                                                   "arguments": "{}"})],
        [event("response.completed", response={"status": "completed", "usage": USAGE})],
    ]
    found = chunks_of(b"".join(shape.events(batch) for batch in batches))
    assert found[-1] == "[DONE]"
    chunks = found[:-1]
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]} and {c["created"] for c in chunks} == {1700000000}
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d["content"] for d in deltas if "content" in d][1:] == ["Let me ", "check."]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"q":'}}, {"index": 0, "function": {"arguments": '"x"}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "other", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},  # no pieces came: the whole at its done
    ]
    finish = chunks[-2]["choices"][0]
    assert (finish["delta"], finish["finish_reason"]) == ({}, "tool_calls")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == CHAT_USAGE


def test_without_include_usage_there_is_no_usage_chunk_and_an_incomplete_answer_says_why():
    shape = chat.Chunks(MODEL, 0, include_usage=False)
    found = chunks_of(shape.events([event("response.created", response={})]) + shape.events([
        event("response.output_text.delta", delta="Hi"),
        event("response.incomplete", response={"status": "incomplete", "usage": USAGE,
                                               "incomplete_details": {"reason": "max_output_tokens"}})]))
    assert found[-1] == "[DONE]" and all("usage" not in chunk for chunk in found[:-1])
    assert found[-2]["choices"][0]["finish_reason"] == "length"


def test_a_failure_after_the_first_chunk_is_an_error_chunk_without_done():
    shape = chat.Chunks(MODEL, 0, include_usage=True)
    found = chunks_of(shape.events([event("response.output_text.delta", delta="Hi")]) + shape.events([
        event("response.failed", response={"status": "failed", "error": {"code": "server_error",
                                                                          "message": "boom"}})]))
    assert found[-1]["error"]["code"] == "server_error" and found[-1]["error"]["message"] == "boom"
    assert "[DONE]" not in found
    assert chunks_of(shape.failure("stream_idle_timeout", "silent"))[0]["error"]["code"] == "stream_idle_timeout"


# -- the route -------------------------------------------------------------------------------------

pytestmark = pytest.mark.uses_upstream


@pytest.fixture
def pooled(app, clock):
    return pool_account(app, clock, "a")


def ask_chat(client, **body):
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    response = client.post(CHAT, json=payload)
    response.get_data()
    return response


def test_a_chat_completion_goes_upstream_as_a_responses_request_and_comes_back_as_one(app, client, upstream,
                                                                                         pooled):
    upstream.default = Stream(text="Hello there", headers={"x-codex-primary-used-percent": "3"})
    response = ask_chat(client, messages=[{"role": "system", "content": "Be kind."},
                                          {"role": "user", "content": "hi"}], temperature=0.5)
    assert response.status_code == 200 and response.mimetype == "application/json"
    answer = response.get_json()
    assert answer["choices"][0]["message"]["content"] == "Hello there"
    assert (answer["choices"][0]["finish_reason"], answer["model"]) == ("stop", MODEL)
    assert answer["usage"]["prompt_tokens"] == 120 and answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 20
    assert response.headers["x-codex-primary-used-percent"] == "3"
    [sent] = upstream.requests
    assert sent.path.endswith("/codex/responses") and sent.body["instructions"] == "Be kind."
    assert "temperature" not in sent.body and "messages" not in sent.body
    [log] = logs(app)
    assert (log.status, log.model, log.input_tokens, log.output_tokens) == ("ok", MODEL, 120, 30)


def test_a_chat_stream_is_chunks_then_done_and_is_logged(app, client, upstream, pooled):
    upstream.default = Stream(text="one two three")
    response = ask_chat(client, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    found = chunks_of(response.get_data())
    assert found[-1] == "[DONE]" and found[-2]["usage"]["completion_tokens"] == 30
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in found[:-2])
    assert text == "one two three"
    assert logs(app)[0].status == "ok"


def test_a_chat_stream_cut_short_ends_with_an_error_chunk(app, client, upstream, pooled):
    upstream.default = Stream(text="one two", end="cut")
    found = chunks_of(ask_chat(client, stream=True).get_data())
    assert found[-1]["error"]["code"] == "stream_incomplete" and "[DONE]" not in found
    assert [(log.status, log.error_code) for log in logs(app)] == [("error", "stream_incomplete")]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusal_keeps_its_status_in_the_openai_envelope(app, client, upstream, pooled, stream):
    upstream.default = Fail(400, {"detail": "Unsupported parameter"})
    response = ask_chat(client, stream=stream)
    assert openai_error(response)[0] == 400 and response.get_json()["error"]["message"] == "Unsupported parameter"
    upstream.default = Fail(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                            "resets_in_seconds": 600}})
    response = ask_chat(client, stream=stream)
    assert openai_error(response)[:2] == (429, "usage_limit_reached")


def test_a_stream_failed_before_its_first_chunk_on_every_account_is_a_502(app, client, upstream, pooled):
    upstream.default = Stream(first="failed", error={"code": "server_error", "message": "boom"})
    response = ask_chat(client, stream=True)
    assert openai_error(response)[:2] == (502, "server_error") and response.mimetype == "application/json"


@pytest.mark.parametrize("body", [
    {"messages": []}, {"messages": [{"role": "wizard", "content": "hi"}]}, {"n": 2},
    {"messages": [{"role": "tool", "content": "42"}]},
])
def test_bad_chat_input_is_400_in_the_openai_envelope_and_goes_nowhere(app, client, upstream, pooled, body):
    assert openai_error(ask_chat(client, **body))[:2] == (400, "invalid_request_error")
    assert upstream.count() == 0 and logs(app) == []


def test_a_huge_chat_body_is_413_and_goes_nowhere(app, client, upstream, pooled):
    limit = app.config["PROXY_MAX_BODY_BYTES"]
    response = ask_chat(client, messages=[{"role": "user", "content": "x" * (limit + 1)}])
    assert openai_error(response)[0] == 413 and upstream.count() == 0 and logs(app) == []


# -- model aliases -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, effort_of", [
    (CODEX, {"input": [], "stream": True, "reasoning": {"summary": "auto"}}, lambda sent: sent["reasoning"]),
    (V1, {"input": "hi"}, lambda sent: sent["reasoning"]),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}]}, lambda sent: sent["reasoning"]),
])
def test_an_alias_is_its_catalog_model_with_that_effort_on_every_route(app, client, upstream, pooled, path, body,
                                                                       effort_of):
    response = client.post(path, json={"model": MODEL + "-high", **body})
    response.get_data()
    assert response.status_code == 200
    [sent] = upstream.requests
    assert sent.body["model"] == MODEL and effort_of(sent.body)["effort"] == "high"
    if path == CODEX:
        assert sent.body["reasoning"]["summary"] == "auto"  # the rest of the body as sent
    assert logs(app)[0].model == MODEL


def test_an_alias_answers_with_its_base_model_and_the_keys_allowed_models_use_the_base(app, authed, upstream,
                                                                                      pooled):
    response = authed.post("/api/api-keys", json={"name": "k", "allowedModels": [MODEL]})
    key = response.get_json()["key"]
    answer = authed.post(CHAT, json={"model": MODEL + "-xhigh", "messages": [{"role": "user", "content": "hi"}]},
                         headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.get_json()["model"] == MODEL
    refused = authed.post(CHAT, json={"model": "gpt-5.2-high", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {key}"})
    assert openai_error(refused)[:2] == (403, "model_not_allowed")
    unknown = authed.post(CHAT, json={"model": MODEL + "-extreme", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {key}"})
    assert openai_error(unknown)[:2] == (403, "model_not_allowed")
    assert len(upstream.requests) == 1
