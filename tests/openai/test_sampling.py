"""Sampling parameters read from a body: OpenAI names, our explicit defaults, errors naming
the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.engine.sampling import DEFAULT_MAX_TOKENS, SamplingParams
from daemon.errors import InvalidInput
from daemon.openai.sampling import sampling_from_openai


def test_defaults_are_ours() -> None:
    params = sampling_from_openai({})
    assert params == SamplingParams(max_tokens=DEFAULT_MAX_TOKENS, temperature=1.0, top_p=1.0,
                                    top_k=0, stop=(), seed=None, n=1)


def test_reads_openai_names() -> None:
    params = sampling_from_openai({"max_tokens": 5, "temperature": 0, "top_p": 0.5, "top_k": 4,
                                   "stop": "\n", "seed": 3, "n": 2, "model": "ignored"})
    assert params == SamplingParams(5, 0.0, 0.5, 4, ("\n",), 3, 2)
    assert params.greedy
    assert sampling_from_openai({"max_completion_tokens": 7}).max_tokens == 7
    assert sampling_from_openai({"temperature": None}).temperature == 1.0


def test_reads_vllm_extensions() -> None:
    params = sampling_from_openai({"ignore_eos": True, "min_tokens": 3, "top_k": 5,
                                   "repetition_penalty": 1, "stop_token_ids": [2, 7],
                                   "max_tokens": 9})
    assert (params.ignore_eos, params.min_tokens, params.top_k) == (True, 3, 5)
    assert params.repetition_penalty == 1.0 and isinstance(params.repetition_penalty, float)
    assert params.stop_token_ids == (2, 7)


@pytest.mark.parametrize(("body", "name"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "5"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"n": 0}, "n"),
    ({"n": 100}, "n"),
    ({"seed": -1}, "seed"),
    ({"stop": 3}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"max_tokens": 2**21}, "max_tokens"),
    ({"ignore_eos": 1}, "ignore_eos"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"min_tokens": 9, "max_tokens": 8}, "min_tokens"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"repetition_penalty": 3}, "repetition_penalty"),
    ({"stop_token_ids": 5}, "stop_token_ids"),
    ({"stop_token_ids": [1, -2]}, "stop_token_ids"),
    ({"stop_token_ids": list(range(65))}, "stop_token_ids"),
])
def test_invalid_values_name_the_parameter(body: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidInput, match=rf"^{name}: "):
        sampling_from_openai(body)
