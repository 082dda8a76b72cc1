"""The OpenAI Responses API on the ChatGPT backend: the body it accepts, and one answer assembled from its stream.

Pure functions over parsed JSON: the proxy calls ``for_upstream`` on a
``/v1/responses`` body before sending it, and ``assemble`` on the events of a
non-streaming request.
"""
from lb.proxy import upstream

# Fields the backend refuses that a client may send harmlessly: dropped.
DROPPED = ("max_output_tokens", "temperature", "prompt_cache_retention", "safety_identifier")
# Fields whose meaning the backend cannot give (it stores nothing): refused, 400.
REFUSED = ("previous_response_id",)
INCLUDABLE = ("reasoning.encrypted_content", "message.output_text.logprobs", "web_search_call.action.sources")
REFUSED_TOOLS = ("file_search", "code_interpreter", "computer_use", "computer_use_preview", "image_generation")
RENAMED_TOOLS = {"web_search_preview": "web_search"}


class Refused(ValueError):
    """A body the backend would refuse; the message says which field and why (answered 400)."""


def for_upstream(body):
    """A /v1/responses body made what the backend accepts (a new dict; ``body`` is left as it was).

    ``instructions`` defaults to "", ``store`` is false and ``stream`` true, a
    string ``input`` becomes one user message, the fields of DROPPED go, and
    what the backend cannot do raises Refused.
    """
    for field in REFUSED:
        if body.get(field) is not None:
            raise Refused(f"{field} is not supported: the upstream keeps no responses; send the whole input")
    if body.get("truncation") not in (None, "disabled"):
        raise Refused("truncation is not supported; only \"disabled\"")
    shaped = {name: value for name, value in body.items() if name not in DROPPED}
    if shaped.get("instructions") is None:
        shaped["instructions"] = ""
    shaped["store"] = False
    shaped["stream"] = True
    shaped["input"] = _input(body.get("input", []))
    if "include" in body:
        shaped["include"] = _include(body["include"])
    if "tools" in body:
        shaped["tools"] = _tools(body["tools"])
    return shaped


def with_effort(body, effort):
    """A Responses body with a model alias's reasoning effort (a new dict), or ``body`` itself without one."""
    if effort is None:
        return body
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {**body, "reasoning": {**reasoning, "effort": effort}}


def _input(value):
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise Refused("input must be a string or a list of input items")
    for item in value:
        content = item.get("content") if isinstance(item, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "input_file" and "file_id" in part:
                raise Refused("input_file.file_id is not supported; send the file's data instead")
    return value


def _include(value):
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise Refused("include must be a list of strings")
    for name in value:
        if name not in INCLUDABLE:
            raise Refused(f"include value {name!r} is not supported; use one of " + ", ".join(INCLUDABLE))
    return value


def _tools(value):
    if not isinstance(value, list):
        raise Refused("tools must be a list")
    shaped = []
    for tool in value:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in REFUSED_TOOLS:
            raise Refused(f"tools of type {kind} are not supported")
        shaped.append({**tool, "type": RENAMED_TOOLS[kind]} if kind in RENAMED_TOOLS else tool)
    return shaped


# -- one JSON answer from a stream ---------------------------------------------------------

PARSED = upstream.PARSED | {upstream.OUTPUT_ITEM_DONE}  # what a JSON answer is assembled from


def assemble(terminal, items):
    """The ``response`` of a terminal event, its ``output`` filled from the output_item.done events
    (``items``: their parsed data, in order) when the upstream left it empty, as it does with store false."""
    response = dict((terminal.data or {}).get("response") or {})
    if not response.get("output"):
        done = sorted((event for event in items if isinstance(event.get("item"), dict)),
                      key=lambda event: event.get("output_index") if isinstance(event.get("output_index"), int)
                      else 0)
        response["output"] = [event["item"] for event in done]
    return response
