"""daemon/openai/responses.py without a server: input forms and the stream's event order."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.engine.generation import Delta, Usage
from daemon.engine.outcome import ChoiceOutcome, Outcome
from daemon.errors import InvalidInput
from daemon.openai.responses import ResponseEvents, parse_responses

EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
          "response.content_part.added", "response.output_text.delta",
          "response.output_text.delta", "response.output_text.done",
          "response.content_part.done", "response.output_item.done"]


def test_input_forms_and_instructions() -> None:
    call = parse_responses({"model": "m", "instructions": "be brief", "max_output_tokens": 4,
                            "input": [{"role": "user", "content": [
                                {"type": "input_text", "text": "hi"}]},
                                      {"type": "message", "role": "assistant", "content": "yo"}]})
    assert call.generation.messages == [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "yo"}]
    assert call.generation.sampling.max_tokens == 4 and call.max_output_tokens == 4


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "temperature": -1}, "temperature"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": [{"type": "function_call_output"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0].type"),
    ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
])
def test_bad_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_responses(body)
    assert caught.value.param == param


def events_for(finish: str) -> list[dict[str, Any]]:
    encoder = ResponseEvents(parse_responses({"input": "x"}), response_id="resp_1", created=1,
                             model="m")
    return [*encoder.start(), *encoder.on_delta(Delta(text="a")),
            *encoder.on_delta(Delta(text="b")),
            *encoder.on_delta(Delta(finish_reason=finish,  # type: ignore[arg-type]
                                    usage=Usage(1, 2)))]


def test_stream_events_end_in_completed() -> None:
    events = events_for("stop")
    assert [e["type"] for e in events] == [*EVENTS, "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "ab"
    assert final["usage"]["output_tokens"] == 2 and final["usage"]["total_tokens"] == 3
    assert events[0]["response"]["status"] == "in_progress"


def test_stream_cut_by_max_output_tokens_ends_incomplete() -> None:
    events = events_for("length")
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_whole_response() -> None:
    encoder = ResponseEvents(parse_responses({"input": "x"}), response_id="resp_1", created=1,
                             model="m")
    body = encoder.response(Outcome([ChoiceOutcome("hi", "stop")], Usage(3, 1)))
    assert (body["object"], body["status"], body["output"][0]["role"]) == (
        "response", "completed", "assistant")
