"""POST /v1/embeddings: which texts to embed and how to encode the vectors on the way out."""

from __future__ import annotations

import base64
import dataclasses
import struct
from collections.abc import Sequence
from typing import Any

from daemon import fields
from daemon.errors import InvalidInput
from daemon.openai.wire import IGNORED_KEYS

MAX_INPUTS = 2048  # OpenAI's own limit per request
_ACCEPTED = IGNORED_KEYS | {"input", "encoding_format", "dimensions"}
_FORMATS = ("float", "base64")


@dataclasses.dataclass(frozen=True)
class EmbeddingsCall:
    texts: list[str]
    encoding_format: str
    dimensions: int | None


def parse_embeddings(body: Any) -> EmbeddingsCall:
    body = fields.json_object(body)
    fields.check_keys(body, _ACCEPTED)
    encoding = body.get("encoding_format") or "float"
    if encoding not in _FORMATS:
        raise InvalidInput(f"encoding_format: expected one of {', '.join(_FORMATS)}, got "
                           f"{encoding!r}", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or dimensions < 1):
        raise InvalidInput(f"dimensions: expected a positive integer, got {dimensions!r}",
                           "dimensions")
    return EmbeddingsCall(_texts(fields.required(body, "input")), encoding, dimensions)


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise InvalidInput("input: expected a string or a non-empty array of strings", "input")
    if len(texts) > MAX_INPUTS:
        raise InvalidInput(f"input: at most {MAX_INPUTS} inputs per request, got {len(texts)}",
                           "input")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"input[{i}]: expected a string (token arrays are not "
                               f"supported), got {fields.kind(text)}", "input")
        if not text:
            raise InvalidInput(f"input[{i}]: must not be empty", "input")
    return texts


def check_dimensions(call: EmbeddingsCall, model_dimensions: int) -> None:
    """The model's vectors cannot be shortened without changing what they mean."""
    if call.dimensions is not None and call.dimensions != model_dimensions:
        raise InvalidInput(f"dimensions: this model's embeddings have {model_dimensions} "
                           f"dimensions and cannot be shortened, got {call.dimensions}",
                           "dimensions")


def embeddings_response(vectors: Sequence[Sequence[float]], prompt_tokens: int, *,
                        encoding_format: str, model: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index,
                  "embedding": _encode(vector, encoding_format)}
                 for index, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _encode(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # What OpenAI sends: little-endian float32s, base64-encoded.
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)
