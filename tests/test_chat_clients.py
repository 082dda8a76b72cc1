"""Real clients of POST /v1/chat/completions through the real server (waitress, its own process) to the fake
upstream: the official openai package, and Vercel's AI SDK (npm: ai, @ai-sdk/openai) run by node.

Each test checks three things: what the client made of the answer, what the upstream received (the Responses
request the chat request was translated to), and the request log.

Why a second client: the openai package is lenient. Its models accept missing or mistyped fields and unknown chunk
shapes, so a chunk stream that is subtly wrong can still pass through it. The AI SDK's Chat Completions provider
(``createOpenAI(...).chat(model)``, not its Responses one) validates every answer and every chunk against zod
schemas and checks the order of tool-call deltas (a new call must bring its id and name), reporting any deviation
as an error: so it catches shape errors the openai package tolerates (a tool call's ``index`` sent as a string,
say: the openai package's stream helper takes it, the AI SDK fails the stream). It is installed from npm at pinned
versions by scripts/ai-sdk.sh into a cache outside the clone, once per version; the Makefile passes that directory
in AI_SDK (as it passes CODEX_CLI), and without it the script is run here, as test_codex_cli.py does. When neither
gives an install, the test fails saying so: it never skips. Nothing leaves loopback.
"""
import json
import os
import shutil
import subprocess

import openai
import pydantic
import pytest

from fixtureapps.upstream import Stream
from helpers.data import ROOT, logs
from helpers.servers import eventually

MODEL = "gpt-5.3-codex"
WORKSPACE = "ws-a"  # the proxied fixture's pooled account
USAGE = (120, 20, 30)  # the fake upstream's: input tokens, of which cached, output tokens
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a number up",
                                         "parameters": {"type": "object", "properties": {"a": {"type": "number"}},
                                                        "required": ["a"]}}}
CALL = Stream(text="", calls=(("lookup", '{"a":1}'),))  # the model asks for lookup(a=1): its call id is call_1


def sdk(server, key):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0, timeout=30)


def ledger(app):
    return [(log.status, log.error_code, log.model, log.input_tokens, log.cached_input_tokens, log.output_tokens)
            for log in logs(app)]


def logged(app, expected):
    """Whether the request logs come to be ``expected``: a stream's log is written as its end leaves the
    server, and a client that stops reading at [DONE] may look before that."""
    return eventually(lambda: ledger(app) == expected, seconds=10)


OK = ("ok", None, MODEL, 120, 20, 30)


# -- the openai package ----------------------------------------------------------------------------

def test_openai_chat_completion_with_usage_details_through_an_alias(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="Hello through chat", reasoning_tokens=7)
    with sdk(server, key) as client:
        completion = client.chat.completions.create(
            model=MODEL + "-low", messages=[{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "say hello"}])
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content, choice.message.refusal, choice.message.tool_calls) == (
        "assistant", "Hello through chat", None, None)
    assert choice.finish_reason == "stop" and completion.model == MODEL
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 30, 150)
    assert usage.prompt_tokens_details.cached_tokens == 20
    assert usage.completion_tokens_details.reasoning_tokens == 7
    [sent] = upstream.requests
    assert (sent.body["model"], sent.body["instructions"], sent.body["reasoning"]) == (MODEL, "Be brief.",
                                                                                      {"effort": "low"})
    assert sent.body["input"] == [{"type": "message", "role": "user",
                                   "content": [{"type": "input_text", "text": "say hello"}]}]
    assert logged(app, [OK])


def test_openai_chat_stream_without_stream_options_has_no_usage_chunk(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="one two three")
    with sdk(server, key) as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count"}],
                                                     stream=True))
    assert all(chunk.usage is None for chunk in chunks) and all(chunk.choices for chunk in chunks)
    assert {chunk.id for chunk in chunks} == {chunks[0].id} and chunks[0].choices[0].delta.role == "assistant"
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]
    assert pieces == ["one ", "two ", "three"]
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "stop"
    assert [chunk.choices[0].finish_reason for chunk in chunks].count(None) == len(chunks) - 1
    assert upstream.requests[0].body["stream"] is True and "stream_options" not in upstream.requests[0].body
    assert logged(app, [OK])


def test_openai_chat_stream_with_include_usage_ends_with_the_usage_chunk(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="one two three", reasoning_tokens=4)
    with sdk(server, key) as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count"}],
                                                     stream=True, stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and all(chunk.usage is None for chunk in body)
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (120, 30, 150)
    assert last.usage.prompt_tokens_details.cached_tokens == 20
    assert last.usage.completion_tokens_details.reasoning_tokens == 4
    assert "".join(chunk.choices[0].delta.content or "" for chunk in body) == "one two three"
    assert body[-1].choices[0].finish_reason == "stop"
    assert logged(app, [OK])


def assert_round_trip_upstream(upstream, answer):
    """The two requests the upstream received: the tool offered, then the call and its output, one call id."""
    first, second = upstream.requests
    assert first.body["tools"] == [{"type": "function", "name": "lookup", "description": "Look a number up",
                                    "parameters": TOOL["function"]["parameters"]}]
    assert second.body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look 1 up"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": answer}]


def test_openai_tool_call_round_trip(proxied, upstream):
    server, key, app = proxied
    upstream.plan(WORKSPACE, CALL, Stream(text="It is 2"))
    messages = [{"role": "user", "content": "look 1 up"}]
    with sdk(server, key) as client:
        asked = client.chat.completions.create(model=MODEL, messages=messages, tools=[TOOL])
        [choice] = asked.choices
        [call] = choice.message.tool_calls
        assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
        assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == (
            "call_1", "function", "lookup", {"a": 1})
        # The assistant's message as the SDK parsed it, sent back as it is (as its docs show), then the result.
        messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": '{"found": 2}'}]
        answered = client.chat.completions.create(model=MODEL, messages=messages, tools=[TOOL])
    assert (answered.choices[0].message.content, answered.choices[0].finish_reason) == ("It is 2", "stop")
    assert_round_trip_upstream(upstream, '{"found": 2}')
    assert logged(app, [OK, OK])


def test_openai_tool_call_round_trip_streamed_with_the_stream_helper(proxied, upstream):
    server, key, app = proxied
    upstream.plan(WORKSPACE, CALL, Stream(text="It is 2"))
    messages = [{"role": "user", "content": "look 1 up"}]
    with sdk(server, key) as client:
        with client.chat.completions.stream(model=MODEL, messages=messages, tools=[TOOL]) as stream:
            done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
            asked = stream.get_final_completion()
        [choice] = asked.choices
        [call] = choice.message.tool_calls
        assert [(event.name, event.index, event.arguments) for event in done] == [("lookup", 0, '{"a":1}')]
        assert (choice.finish_reason, call.id, call.function.name, call.function.arguments) == (
            "tool_calls", "call_1", "lookup", '{"a":1}')
        messages += [{"role": "assistant", "content": None, "tool_calls": [
                         {"id": call.id, "type": "function",
                          "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
                     {"role": "tool", "tool_call_id": call.id, "content": "2"}]
        with client.chat.completions.stream(model=MODEL, messages=messages, tools=[TOOL]) as stream:
            deltas = [event.delta for event in stream if event.type == "content.delta"]
            answered = stream.get_final_completion()
    # The first chunk is {"role": "assistant", "content": ""}, as OpenAI's own: the helper reports its "" too.
    assert deltas == ["", "It ", "is ", "2"] and answered.choices[0].message.content == "It is 2"
    assert answered.choices[0].finish_reason == "stop"
    assert_round_trip_upstream(upstream, "2")
    assert logged(app, [OK, OK])


class Place(pydantic.BaseModel):
    city: str
    population: int


def test_openai_parse_with_a_json_schema(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text='{"city": "Paris", "population": 2100000}')
    with sdk(server, key) as client:
        parsed = client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "a city"}],
                                               response_format=Place)
    [choice] = parsed.choices
    assert choice.message.parsed == Place(city="Paris", population=2100000) and choice.finish_reason == "stop"
    fmt = upstream.requests[0].body["text"]["format"]
    assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "Place", True)
    assert fmt["schema"]["properties"] == {"city": {"title": "City", "type": "string"},
                                           "population": {"title": "Population", "type": "integer"}}
    assert fmt["schema"]["required"] == ["city", "population"] and fmt["schema"]["additionalProperties"] is False
    assert logged(app, [OK])


@pytest.mark.parametrize("reason, finish", [("max_output_tokens", "length"), ("content_filter", "content_filter")])
def test_openai_an_incomplete_answer_is_its_finish_reason(proxied, upstream, reason, finish):
    server, key, app = proxied
    upstream.default = Stream(text="cut short", end="incomplete", incomplete_reason=reason)
    with sdk(server, key) as client:
        one = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                     stream=True))
        error = openai.LengthFinishReasonError if finish == "length" else openai.ContentFilterFinishReasonError
        with pytest.raises(error):  # parse reads the finish_reason: the JSON was not finished
            client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                          response_format=Place)
    assert (one.choices[0].finish_reason, one.choices[0].message.content) == (finish, "cut short")
    assert chunks[-1].choices[0].finish_reason == finish
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "cut short"
    assert logged(app, [("ok", f"incomplete:{reason}", MODEL, 120, 20, 30)] * 3)


# -- Vercel's AI SDK -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ai_sdk():
    """The AI SDK's install prefix: from the Makefile (AI_SDK), else installed (or found in the cache) now."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the AI SDK tests need node 20 or newer (Debian's nodejs)")
    path = os.environ.get("AI_SDK")
    if not path:
        found = subprocess.run([os.path.join(ROOT, "scripts", "ai-sdk.sh")], capture_output=True, text=True,
                               timeout=900)
        if found.returncode != 0:
            pytest.fail("AI_SDK is not set (make test sets it from scripts/ai-sdk.sh) and scripts/ai-sdk.sh "
                        f"could not install the AI SDK: {found.stderr.strip()}")
        path = found.stdout.strip()
    if not os.path.isfile(os.path.join(path, "node_modules", "ai", "package.json")):
        pytest.fail(f"AI_SDK={path!r} is not an AI SDK install (no node_modules/ai): run scripts/ai-sdk.sh")
    return node, path


def run_ai_sdk(ai_sdk, server, key, case):
    node, prefix = ai_sdk
    script = os.path.join(ROOT, "tests", "clients", "ai_sdk.mjs")
    done = subprocess.run([node, script, prefix, f"http://127.0.0.1:{server.port}/v1", key, case],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == [], result["errors"]  # a chunk or answer its schemas refused would be here
    return result


AI_USAGE = {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150, "cacheReadTokens": 20, "reasoningTokens": 5}


def test_ai_sdk_generate_text(ai_sdk, proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="Hello to the AI SDK", reasoning_tokens=5)
    result = run_ai_sdk(ai_sdk, server, key, "generate")
    assert (result["text"], result["finishReason"], result["modelId"]) == ("Hello to the AI SDK", "stop", MODEL)
    assert result["usage"] == AI_USAGE and result["id"].startswith("chatcmpl-")
    [sent] = upstream.requests
    # The alias's effort (-high); the SDK sends a gpt-5 model's system prompt as a developer message.
    assert (sent.body["model"], sent.body["reasoning"], sent.body["instructions"]) == (MODEL, {"effort": "high"},
                                                                                       "Be brief.")
    assert logged(app, [OK])


def test_ai_sdk_stream_text(ai_sdk, proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="one two three", reasoning_tokens=5)
    result = run_ai_sdk(ai_sdk, server, key, "stream")
    assert result["deltas"] == ["one ", "two ", "three"] and result["text"] == "one two three"
    assert (result["finishReason"], result["usage"], result["modelId"]) == ("stop", AI_USAGE, MODEL)
    assert result["parts"][0] == "start" and result["parts"][-1] == "finish"
    assert "stream_options" not in upstream.requests[0].body  # it asked for usage: the proxy gave it, kept it
    assert logged(app, [OK])


@pytest.mark.parametrize("case", ["generate-tool", "stream-tool"])
def test_ai_sdk_tool_call_round_trip(ai_sdk, proxied, upstream, case):
    server, key, app = proxied
    upstream.plan(WORKSPACE, CALL, Stream(text="It is 2"))
    result = run_ai_sdk(ai_sdk, server, key, case)
    asked, answered = result["steps"]
    assert asked["finishReason"] == "tool-calls"
    assert asked["toolCalls"] == [{"id": "call_1", "name": "lookup", "input": {"a": 1}}]
    assert asked["toolResults"] == [{"id": "call_1", "output": {"found": 2}}]
    assert (answered["text"], answered["finishReason"], answered["toolCalls"]) == ("It is 2", "stop", [])
    assert result["text"] == "It is 2"
    first, second = upstream.requests
    assert [tool["name"] for tool in first.body["tools"]] == ["lookup"]
    assert first.body["tools"][0]["parameters"]["properties"] == {"a": {"type": "number"}}
    assert [item["type"] for item in second.body["input"]] == ["message", "function_call", "function_call_output"]
    call, output = second.body["input"][1:]
    assert (call["call_id"], call["name"], json.loads(call["arguments"])) == ("call_1", "lookup", {"a": 1})
    assert (output["call_id"], json.loads(output["output"])) == ("call_1", {"found": 2})
    assert logged(app, [OK, OK])
