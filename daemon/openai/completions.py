"""POST /v1/completions (legacy): a raw prompt, continued without the chat template."""

from __future__ import annotations

import dataclasses
from typing import Any

from daemon import fields
from daemon.engine.generation import Delta, GenerationRequest
from daemon.engine.outcome import Outcome
from daemon.openai.sampling import SAMPLING_KEYS, sampling_from_openai
from daemon.errors import InvalidInput
from daemon.openai.chat import read_include_usage
from daemon.openai.wire import IGNORED_KEYS, finish_reason, usage_payload

_ACCEPTED = SAMPLING_KEYS | IGNORED_KEYS | {"prompt", "stream", "stream_options", "best_of"}
_REFUSED = {
    "echo": "echoing the prompt is not supported",
    "logprobs": "log probabilities are not supported",
    "logit_bias": "logit_bias is not supported",
    "suffix": "suffix (insertion) is not supported",
    "frequency_penalty": "only 0 is supported",
    "presence_penalty": "only 0 is supported",
}


@dataclasses.dataclass(frozen=True)
class CompletionCall:
    generation: GenerationRequest
    stream: bool
    include_usage: bool


def parse_completion(body: Any) -> CompletionCall:
    body = fields.json_object(body)
    fields.check_keys(body, _ACCEPTED, _REFUSED)
    stream = fields.boolean(body, "stream")
    include_usage = read_include_usage(body, stream)
    sampling = sampling_from_openai(body)
    best_of = body.get("best_of")
    if best_of is not None and best_of != sampling.n:
        raise InvalidInput("best_of: only best_of equal to n is supported", "best_of")
    return CompletionCall(GenerationRequest(prompt=_prompt(fields.required(body, "prompt")),
                                            sampling=sampling), stream, include_usage)


def _prompt(value: Any) -> str:
    """One prompt: a string, or an array holding one string (token arrays and batches are
    refused rather than half-served)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        raise InvalidInput("prompt: one prompt per request is supported (send a string)",
                           "prompt")
    if not isinstance(value, str):
        raise InvalidInput(f"prompt: expected a string, got {fields.kind(value)}", "prompt")
    if not value:
        raise InvalidInput("prompt: must not be empty", "prompt")
    return value


def text_completion(outcome: Outcome, *, completion_id: str, created: int,
                    model: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": index, "text": choice.text, "logprobs": None,
             "finish_reason": finish_reason(choice.finish_reason)}
            for index, choice in enumerate(outcome.choices)
        ],
        "usage": usage_payload(outcome.usage),
    }


class CompletionChunks:
    """Deltas as streamed `text_completion` objects; the last chunk of a choice carries its
    finish_reason, and with include_usage a final chunk with no choices carries usage."""

    def __init__(self, *, completion_id: str, created: int, model: str,
                 include_usage: bool) -> None:
        self._base = {"id": completion_id, "object": "text_completion", "created": created,
                      "model": model, "system_fingerprint": None}
        self._include_usage = include_usage

    def start(self) -> list[dict[str, Any]]:
        return []

    def on_delta(self, delta: Delta) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        if delta.text or delta.finish_reason is not None:
            finish = None if delta.finish_reason is None else finish_reason(delta.finish_reason)
            chunk = {**self._base, "choices": [{"index": delta.index, "text": delta.text,
                                                "logprobs": None, "finish_reason": finish}]}
            if self._include_usage:
                chunk["usage"] = None
            chunks.append(chunk)
        if delta.usage is not None and self._include_usage:
            chunks.append({**self._base, "choices": [], "usage": usage_payload(delta.usage)})
        return chunks

    def end(self) -> list[dict[str, Any]]:
        return []
