"""daemon/openai/chat.py without a server: parsing, refusals, response and chunk shapes."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.engine.generation import Delta, Usage
from daemon.engine.outcome import ChoiceOutcome, Outcome
from daemon.errors import InvalidInput
from daemon.openai.chat import ChatChunks, chat_completion, parse_chat

USER = [{"role": "user", "content": "hi"}]


def test_parses_messages_and_sampling() -> None:
    call = parse_chat({"model": "any", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ], "max_completion_tokens": 5, "temperature": 0, "n": 2, "stop": "x", "seed": 3,
        "stream": True, "stream_options": {"include_usage": True}})
    assert call.generation.messages == [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "a\nb"}]
    sampling = call.generation.sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.n, sampling.stop,
            sampling.seed) == (5, 0.0, 2, ("x",), 3)
    assert call.stream and call.include_usage


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": USER, "temperature": 3}, "temperature"),
    ({"messages": USER, "top_p": 0}, "top_p"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"messages": USER, "max_completion_tokens": "5"}, "max_completion_tokens"),
    ({"messages": USER, "n": 99}, "n"),
    ({"messages": USER, "stop": 7}, "stop"),
    ({"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": USER, "tools": [{"type": "function"}]}, "tools"),
    ({"messages": USER, "logprobs": True}, "logprobs"),
    ({"messages": USER, "frequency_penalty": 0.5}, "frequency_penalty"),
    ({"messages": USER, "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": USER, "bogus": 1}, "bogus"),
    ({"messages": USER, "stream": "yes"}, "stream"),
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0].type"),
])
def test_bad_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_chat(body)
    assert caught.value.param == param
    assert caught.value.message.startswith(param)


def test_defaults_that_ask_for_nothing_are_accepted() -> None:
    call = parse_chat({"messages": USER, "tools": [], "logprobs": False, "presence_penalty": 0,
                       "user": "u", "response_format": {"type": "text"}, "tool_choice": "none"})
    assert not call.stream


def test_completion_shape() -> None:
    outcome = Outcome([ChoiceOutcome("hello", "length"), ChoiceOutcome("bye", "cancelled")],
                      Usage(4, 3))
    body = chat_completion(outcome, completion_id="chatcmpl-1", created=7, model="m")
    assert body["object"] == "chat.completion" and body["model"] == "m"
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] \
        == [(0, "hello", "length"), (1, "bye", "stop")]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_chunks_open_with_role_end_with_finish_then_usage() -> None:
    encoder = ChatChunks(completion_id="c", created=1, model="m", include_usage=True)
    chunks = [*encoder.on_delta(Delta(text="a")), *encoder.on_delta(Delta(text="b")),
              *encoder.on_delta(Delta(finish_reason="stop", usage=Usage(2, 2)))]
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas == [{"role": "assistant", "content": "", "refusal": None}, {"content": "a"},
                      {"content": "b"}, {}, None]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert [c["usage"] for c in chunks[:-1]] == [None] * 4
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c" for c in chunks)


def test_chunks_without_usage_have_no_usage_key() -> None:
    encoder = ChatChunks(completion_id="c", created=1, model="m", include_usage=False)
    chunks = [*encoder.on_delta(Delta(text="a", index=1)),
              *encoder.on_delta(Delta(finish_reason="length", index=1, usage=Usage(1, 1)))]
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["index"] for c in chunks] == [1, 1, 1]
