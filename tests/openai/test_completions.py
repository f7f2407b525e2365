"""daemon/openai/completions.py without a server."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.engine.generation import Delta, Usage
from daemon.engine.outcome import ChoiceOutcome, Outcome
from daemon.errors import InvalidInput
from daemon.openai.completions import CompletionChunks, parse_completion, text_completion


def test_a_raw_prompt_without_template() -> None:
    call = parse_completion({"prompt": ["Once upon"], "max_tokens": 3, "n": 2, "best_of": 2})
    assert call.generation.prompt == "Once upon" and call.generation.messages is None
    assert call.generation.sampling.n == 2


@pytest.mark.parametrize(("body", "param"), [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "a", "echo": True}, "echo"),
    ({"prompt": "a", "suffix": "z"}, "suffix"),
    ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "seed": -1}, "seed"),
])
def test_bad_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_completion(body)
    assert caught.value.param == param


def test_response_and_chunks() -> None:
    body = text_completion(Outcome([ChoiceOutcome("x y", "length")], Usage(1, 2)),
                           completion_id="cmpl-1", created=1, model="m")
    assert body["object"] == "text_completion"
    assert body["choices"] == [{"index": 0, "text": "x y", "logprobs": None,
                                "finish_reason": "length"}]
    encoder = CompletionChunks(completion_id="cmpl-1", created=1, model="m", include_usage=True)
    chunks = [*encoder.on_delta(Delta(text="x")),
              *encoder.on_delta(Delta(finish_reason="length", usage=Usage(1, 1)))]
    assert [c["choices"][0]["text"] if c["choices"] else None for c in chunks] == ["x", "", None]
    assert chunks[-1]["usage"]["total_tokens"] == 2
