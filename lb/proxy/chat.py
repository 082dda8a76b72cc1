"""The OpenAI Chat Completions API on the Responses upstream: a chat request made a Responses body, and the
Responses events made back into one ``chat.completion`` or a stream of ``chat.completion.chunk``.

Pure functions and one small class over parsed JSON: the proxy calls
``for_upstream`` on a ``/v1/chat/completions`` body before sending it,
``completion`` on the assembled answer of a non-streaming request, and feeds
a streaming one's events to ``Chunks`` (through lb.proxy.relay).
"""
import json
import secrets

from lb.errors import openai_error
from lb.proxy import upstream
from lb.proxy.responses import Refused
from lb.proxy.upstream import (ARGUMENTS_DELTA, COMPLETED, ERROR, FAILED, INCOMPLETE, OUTPUT_ITEM_ADDED,
                               OUTPUT_ITEM_DONE, OUTPUT_TEXT_DELTA, REFUSAL_DELTA, error_of, response_of)

ROLES = ("system", "developer", "user", "assistant", "tool")
FORMATS = ("text", "json_object", "json_schema")
# An incomplete answer's reason, as a finish_reason; any other reason is its token budget too.
FINISH_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
# What a chunk stream is made of: the deltas too, besides what every stream parses.
PARSED = upstream.PARSED | {OUTPUT_ITEM_ADDED, OUTPUT_TEXT_DELTA, REFUSAL_DELTA, ARGUMENTS_DELTA, OUTPUT_ITEM_DONE}


def new_id():
    return "chatcmpl-" + secrets.token_urlsafe(18)


# -- the request --------------------------------------------------------------------------------

def for_upstream(body, effort=None):
    """The Responses body a chat request stands for (``effort``: a model alias's, over reasoning_effort).

    System and developer messages become ``instructions``; user, assistant
    and tool messages become input items; tools, tool_choice,
    parallel_tool_calls, response_format, reasoning_effort, prompt_cache_key
    and user pass on in the Responses shape; every other field is dropped.
    Raises Refused (answered 400) for what cannot be translated.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refused("messages is required: a non-empty list of messages")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise Refused("n must be 1: the upstream gives one choice")
    instructions, items = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise Refused(f"{where}.role must be one of " + ", ".join(ROLES))
        if role in ("system", "developer"):
            instructions.append(_text(message.get("content"), where))
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": _user_content(message.get("content"), where)})
        elif role == "assistant":
            items.extend(_assistant(message, where))
        else:
            items.append(_tool_output(message, where))
    shaped = {"model": body.get("model"), "instructions": "\n\n".join(instructions), "input": items,
              "store": False, "stream": True}
    if body.get("tools") is not None:
        shaped["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        shaped["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("response_format") is not None:
        shaped["text"] = {"format": _format(body["response_format"])}
    effort = effort or body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise Refused("reasoning_effort must be a string")
        shaped["reasoning"] = {"effort": effort}
    for name in ("parallel_tool_calls", "prompt_cache_key", "user"):
        if body.get(name) is not None:
            shaped[name] = body[name]
    return shaped


def _text(content, where):
    """A message's text: a string, or its text parts joined (a refusal part counts as text)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise Refused(f"{where}.content must be a string or a list of content parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("refusal" if kind == "refusal" else "text") if kind in ("text", "refusal") else None
        if not isinstance(text, str):
            raise Refused(f"{where}.content[{j}] must be a text part")
        texts.append(text)
    return "".join(texts)


def _user_content(content, where):
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise Refused(f"{where}.content must be a string or a list of content parts")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            if not isinstance(image.get("url"), str):
                raise Refused(f"{where}.content[{j}].image_url.url must be a string")
            parts.append({"type": "input_image", "image_url": image["url"], "detail": image.get("detail") or "auto"})
        else:
            raise Refused(f"{where}.content[{j}] must be a text or image_url part")
    return parts


def _assistant(message, where):
    items = []
    text = _text(message.get("content"), where)
    if text:
        items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
    calls = message.get("tool_calls")
    if calls is None:
        return items
    if not isinstance(calls, list):
        raise Refused(f"{where}.tool_calls must be a list")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(call.get("id") if function else None, str) and isinstance(function, dict)
                and isinstance(function.get("name"), str)):
            raise Refused(f"{where}.tool_calls[{j}] must have an id and a function with a name")
        arguments = function.get("arguments")
        items.append({"type": "function_call", "call_id": call["id"], "name": function["name"],
                      "arguments": arguments if isinstance(arguments, str) else "{}"})
    return items


def _tool_output(message, where):
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.tool_call_id is required: the id of the tool call this answers")
    return {"type": "function_call_output", "call_id": call_id, "output": _text(message.get("content"), where)}


def _tools(tools):
    if not isinstance(tools, list):
        raise Refused("tools must be a list")
    shaped = []
    for j, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise Refused(f"tools[{j}] must be a function tool with a name")
        shaped.append({"type": "function", **{name: function[name] for name in
                                              ("name", "description", "parameters", "strict") if name in function}})
    return shaped


def _tool_choice(choice):
    if choice in ("auto", "none", "required"):
        return choice
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Refused("tool_choice must be auto, none, required or a function by name")
    return {"type": "function", "name": function["name"]}


def _format(response_format):
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in FORMATS:
        raise Refused("response_format.type must be one of " + ", ".join(FORMATS))
    if kind != "json_schema":
        return {"type": kind}
    schema = response_format.get("json_schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        raise Refused("response_format.json_schema must be an object with a name")
    return {"type": "json_schema", **schema}


# -- one answer ---------------------------------------------------------------------------------

def usage(response):
    """A Responses usage object in the Chat Completions shape."""
    tokens = upstream.usage_of(response)
    details = (response.get("usage") or {}).get("output_tokens_details") if isinstance(
        response.get("usage"), dict) else None
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else 0
    return {"prompt_tokens": tokens.input_tokens, "completion_tokens": tokens.output_tokens,
            "total_tokens": tokens.input_tokens + tokens.output_tokens,
            "prompt_tokens_details": {"cached_tokens": tokens.cached_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0}}


def finish_reason(response, called):
    """stop or tool_calls for a completed answer; length or content_filter for an incomplete one."""
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        return FINISH_REASONS.get(details.get("reason") if isinstance(details, dict) else None, "length")
    return "tool_calls" if called else "stop"


def completion(response, model, created):
    """The ``chat.completion`` of an assembled Responses ``response`` (lb.proxy.responses.assemble)."""
    texts, refusals, calls = [], [], []
    for item in response.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    message = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
               "refusal": "".join(refusals) or None}
    if calls:
        message["tool_calls"] = calls
    return {"id": new_id(), "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(response, bool(calls))}],
            "usage": usage(response)}


# -- a stream -----------------------------------------------------------------------------------

def _data(payload):
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Chunks:
    """One answer's chunk stream, made from the upstream's events as they arrive (lb.proxy.relay's shape):
    every chunk has the same id and created; the role comes first; a tool call is its index, id and name,
    then its argument pieces; a finish chunk, the usage chunk if asked for, then [DONE]. A failure after the
    first chunk is one chunk carrying ``error`` and no [DONE]."""

    def __init__(self, model, created, include_usage):
        self.head = {"id": new_id(), "object": "chat.completion.chunk", "created": created, "model": model}
        self.include_usage = include_usage
        self.started = False
        self.calls = {}  # an upstream function call's item id and output index -> its tool call index
        self.streamed = set()  # the tool calls whose arguments came in pieces

    def _chunk(self, delta, finish=None):
        return _data({**self.head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def events(self, batch):
        """The chunks a batch of upstream events makes (possibly none: b"")."""
        out = []
        if not self.started:
            self.started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        for event in batch:
            out.extend(self._event(event.type, event.data or {}, event))
        return b"".join(out)

    def _event(self, kind, data, event):
        delta = data.get("delta")
        item = data.get("item") if isinstance(data.get("item"), dict) else {}
        if kind == OUTPUT_TEXT_DELTA and isinstance(delta, str) and delta:
            yield self._chunk({"content": delta})
        elif kind == REFUSAL_DELTA and isinstance(delta, str) and delta:
            yield self._chunk({"refusal": delta})
        elif kind in (OUTPUT_ITEM_ADDED, OUTPUT_ITEM_DONE) and item.get("type") == "function_call":
            index = self._index(data, item)
            if index is None:  # a new call: its index, id and name, with what it has of its arguments
                index = len(set(self.calls.values()))
                self.calls.update({key: index for key in (item.get("id"), data.get("output_index"))
                                   if key is not None})
                arguments = item.get("arguments") or ""
                if arguments:
                    self.streamed.add(index)
                yield self._chunk({"tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function",
                                                   "function": {"name": item.get("name"), "arguments": arguments}}]})
            elif kind == OUTPUT_ITEM_DONE and index not in self.streamed and item.get("arguments"):
                yield self._chunk({"tool_calls": [{"index": index, "function": {"arguments": item["arguments"]}}]})
        elif kind == ARGUMENTS_DELTA and isinstance(delta, str) and delta:
            index = self._index(data, {"id": data.get("item_id")})
            if index is not None:
                self.streamed.add(index)
                yield self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})
        elif kind in (COMPLETED, INCOMPLETE):
            response = response_of(event)
            yield self._chunk({}, finish_reason(response, bool(self.calls)))
            if self.include_usage:
                yield _data({**self.head, "choices": [], "usage": usage(response)})
            yield DONE
        elif kind in (FAILED, ERROR):
            error = error_of(event) or {}
            yield self.failure(error.get("code") or "upstream_error", error.get("message") or "The upstream failed")

    def _index(self, data, item):
        """The tool call index of an upstream call already seen (by its item id or output index), or None."""
        for key in (item.get("id"), data.get("output_index")):
            if key is not None and key in self.calls:
                return self.calls[key]
        return None

    def failure(self, code, message):
        """The chunk that ends a stream which failed: the error in the OpenAI envelope, and no [DONE]."""
        code = code if isinstance(code, str) else "upstream_error"
        return _data(openai_error(502, code, message if isinstance(message, str) else "The upstream failed"))
