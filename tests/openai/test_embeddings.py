"""daemon/openai/embeddings.py without a server."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.openai.embeddings import check_dimensions, embeddings_response, parse_embeddings


def test_single_and_batch_input() -> None:
    assert parse_embeddings({"input": "a"}).texts == ["a"]
    call = parse_embeddings({"input": ["a", "b"], "encoding_format": "base64", "model": "x"})
    assert call.texts == ["a", "b"] and call.encoding_format == "base64"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": [""]}, "input"),
    ({"input": [[1, 2]]}, "input"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "extra": 1}, "extra"),
])
def test_bad_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_embeddings(body)
    assert caught.value.param == param


def test_dimensions_must_match_the_model() -> None:
    check_dimensions(parse_embeddings({"input": "a", "dimensions": 384}), 384)
    with pytest.raises(InvalidInput):
        check_dimensions(parse_embeddings({"input": "a", "dimensions": 128}), 384)


def test_base64_is_little_endian_float32() -> None:
    body = embeddings_response([[0.5, -1.0]], 3, encoding_format="base64", model="m")
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    floats = embeddings_response([[0.5], [1.0]], 2, encoding_format="float", model="m")
    assert [d["index"] for d in floats["data"]] == [0, 1]
