"""The built-in language model: a thin Model over the engine, served like any user model.

A model directory whose config.yaml has an `engine:` section and no model.py gets this
class (so does `twinserve serve` with no directory at all).

predict takes {"prompt": str} or {"messages": [...]} plus OpenAI sampling keys and
"stream"; it answers {"text", "finish_reason", "usage"}, or streams text chunks.
A prompt is sent as one user message through the chat template: the model is
instruction-tuned and answers a bare prompt poorly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from daemon.engine.core import EngineCore, ResponseIterator
from daemon.engine.generation import GenerationRequest
from daemon.engine.sampling import SAMPLING_KEYS, sampling_from_openai
from daemon.errors import InvalidInput

_KEYS = SAMPLING_KEYS | {"prompt", "messages", "stream", "max_completion_tokens"}


class TextGenerationModel:
    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine

    async def predict(self, model_input: Any) -> Any:
        request, stream = _parse(model_input)
        iterator = self._engine.submit(request)
        if stream:
            return _text_chunks(iterator)
        parts: list[str] = []
        finish_reason: str | None = None
        async for delta in iterator:
            parts.append(delta.text)
            finish_reason = delta.finish_reason or finish_reason
        usage = iterator.usage
        return {
            "text": "".join(parts),
            "finish_reason": finish_reason,
            "usage": None if usage is None else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        }


async def _text_chunks(iterator: ResponseIterator) -> AsyncIterator[str]:
    async for delta in iterator:
        if delta.text:
            yield delta.text


def _parse(body: Any) -> tuple[GenerationRequest, bool]:
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object with a prompt or messages")
    for key in body:
        if key not in _KEYS:
            raise InvalidInput(f"{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput(f"stream: expected true or false, got {stream!r}")
    sampling = sampling_from_openai(body)
    if sampling.n != 1:
        raise InvalidInput("n: this model answers with one choice; use n=1")
    prompt, messages = body.get("prompt"), body.get("messages")
    if messages is None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInput("prompt: expected a non-empty string (or give messages)")
        messages = [{"role": "user", "content": prompt}]
    elif prompt is not None:
        raise InvalidInput("prompt: give either prompt or messages, not both")
    if not isinstance(messages, list) or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        raise InvalidInput("messages: expected a list of {\"role\": str, \"content\": str}")
    return GenerationRequest(messages=messages, sampling=sampling), stream
