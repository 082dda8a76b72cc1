"""lb.proxy.responses: what /v1/responses sends upstream, and one answer assembled from the stream."""
import pytest

from lb.proxy import responses
from lb.proxy.upstream import Event


def test_a_minimal_body_gets_what_the_backend_requires():
    body = {"model": "m", "input": "hi"}
    assert responses.for_upstream(body) == {
        "model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "instructions": "", "store": False, "stream": True}
    assert body == {"model": "m", "input": "hi"}  # the caller's dict is left as it was


def test_given_instructions_and_item_lists_are_kept():
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]}]
    shaped = responses.for_upstream({"model": "m", "input": items, "instructions": "be brief", "stream": False})
    assert (shaped["input"], shaped["instructions"], shaped["stream"]) == (items, "be brief", True)


def test_refused_fields_are_dropped():
    shaped = responses.for_upstream({"model": "m", "input": [], "max_output_tokens": 5, "temperature": 1,
                                     "prompt_cache_retention": "24h", "safety_identifier": "u1", "top_p": 0.5})
    assert set(shaped) == {"model", "input", "instructions", "store", "stream", "top_p"}


@pytest.mark.parametrize("body, field", [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"truncation": "auto"}, "truncation"),
    ({"include": "reasoning.encrypted_content"}, "include"),
    ({"include": ["file_search_call.results"]}, "file_search_call.results"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "image_generation"}]}, "image_generation"),
    ({"input": {"role": "user"}}, "input"),
    ({"input": [{"content": [{"type": "input_file", "file_id": "f"}]}]}, "file_id"),
])
def test_what_the_backend_cannot_do_is_refused_naming_it(body, field):
    with pytest.raises(responses.Refused, match=field):
        responses.for_upstream({"model": "m", "input": [], **body})


def test_truncation_disabled_and_null_are_fine():
    assert responses.for_upstream({"model": "m", "truncation": "disabled"})["truncation"] == "disabled"
    assert responses.for_upstream({"model": "m", "previous_response_id": None})["previous_response_id"] is None


def test_web_search_preview_becomes_web_search():
    shaped = responses.for_upstream({"model": "m", "tools": [{"type": "web_search_preview", "x": 1}]})
    assert shaped["tools"] == [{"type": "web_search", "x": 1}]


def completed(output):
    return Event(b"", "response.completed", {"response": {"id": "r1", "status": "completed", "output": output}})


def test_an_empty_output_is_filled_from_the_done_items_in_their_order():
    items = [{"output_index": 1, "item": {"id": "b"}}, {"output_index": 0, "item": {"id": "a"}}, {"no": "item"}]
    assert responses.assemble(completed([]), items)["output"] == [{"id": "a"}, {"id": "b"}]


def test_an_output_the_upstream_gave_is_kept():
    assert responses.assemble(completed([{"id": "x"}]), [{"output_index": 0, "item": {"id": "a"}}])["output"] == [
        {"id": "x"}]
