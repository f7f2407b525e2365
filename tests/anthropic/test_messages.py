"""daemon/anthropic/messages.py without a server."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.anthropic.messages import MessageEvents, message, parse_messages
from daemon.engine.generation import Delta, Usage
from daemon.engine.outcome import ChoiceOutcome, Outcome
from daemon.errors import InvalidInput

USER = [{"role": "user", "content": "hi"}]


def test_system_prompt_and_stop_sequences() -> None:
    call = parse_messages({"model": "m", "max_tokens": 5, "system": [{"type": "text",
                                                                      "text": "be brief"}],
                           "messages": USER, "stop_sequences": ["\n\n"], "top_k": 5})
    assert call.generation.messages == [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hi"}]
    assert call.generation.sampling.stop == ("\n\n",)
    assert call.generation.sampling.top_k == 5


@pytest.mark.parametrize(("body", "field"), [
    ({"max_tokens": 5, "messages": USER}, "model"),
    ({"model": "m", "messages": USER}, "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": USER}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": USER, "temperature": 1.5}, "temperature"),
    ({"model": "m", "max_tokens": 5, "messages": USER, "stop_sequences": "x"}, "stop_sequences"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
     "messages.0.role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image"}]}]}, "messages.0.content[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": USER, "tools": [{"name": "t"}]}, "tools"),
])
def test_bad_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_messages(body)
    assert caught.value.message.startswith(field + ":")


def test_message_shape_and_stop_reasons() -> None:
    body = message(Outcome([ChoiceOutcome("hi", "stop", "\n\n")], Usage(5, 2)),
                   message_id="msg_1", model="m")
    assert body["content"] == [{"type": "text", "text": "hi"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "\n\n")
    assert body["usage"] == {"input_tokens": 5, "output_tokens": 2}
    longer = message(Outcome([ChoiceOutcome("hi", "length")], Usage(5, 2)), message_id="m",
                     model="m")
    assert longer["stop_reason"] == "max_tokens"


def test_stream_event_sequence() -> None:
    encoder = MessageEvents(message_id="msg_1", model="m")
    events = [*encoder.start(), *encoder.on_delta(Delta(text="a", prompt_tokens=7)),
              *encoder.on_delta(Delta(text="b")),
              *encoder.on_delta(Delta(finish_reason="stop", usage=Usage(7, 2)))]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert events[0]["message"]["usage"] == {"input_tokens": 7, "output_tokens": 0}
    assert events[5]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[5]["usage"] == {"output_tokens": 2}


def test_stream_of_an_empty_answer_still_opens_and_closes() -> None:
    encoder = MessageEvents(message_id="msg_1", model="m")
    events = encoder.on_delta(Delta(finish_reason="stop", usage=Usage(4, 0)))
    assert events[0]["message"]["usage"]["input_tokens"] == 4
    assert events[-1] == {"type": "message_stop"}
