"""The built-in language model: a thin Model over the engine, served like any user model.

A model directory whose config.yaml has an `engine:` section and no model.py gets this
class (so does `twinserve serve` with no directory at all). Each /v1 method only glues:
parse the body with its adapter (daemon/openai, daemon/anthropic), submit to the engine,
convert what comes back. The engine iterator is tied to the request, so a client that
leaves stops the generation.

predict takes {"prompt": str} or {"messages": [...]} plus OpenAI sampling keys and
"stream"; it answers {"text", "finish_reason", "usage"}, or streams text chunks.
A prompt is sent as one user message through the chat template: the model is
instruction-tuned and answers a bare prompt poorly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from daemon.anthropic import messages as anthropic_messages
from daemon.engine.core import EngineCore, ResponseIterator
from daemon.engine.embeddings import Embedder
from daemon.engine.generation import Delta, GenerationRequest
from daemon.engine.outcome import collect
from daemon.openai.sampling import SAMPLING_KEYS, sampling_from_openai
from daemon.errors import InvalidInput
from daemon.openai import chat, completions, embeddings, responses
from daemon.request import Request

_KEYS = SAMPLING_KEYS | {"prompt", "messages", "stream", "max_completion_tokens"}


class StreamEncoder(Protocol):
    """What each API's stream adapter provides: payloads before, per delta, and after."""

    def start(self) -> list[dict[str, Any]]: ...

    def on_delta(self, delta: Delta) -> list[dict[str, Any]]: ...

    def end(self) -> list[dict[str, Any]]: ...


class TextGenerationModel:
    def __init__(self, engine: EngineCore, model_name: str = "twinserve") -> None:
        self._engine = engine
        self._model_name = model_name
        self._embedder = Embedder()

    async def predict(self, model_input: Any) -> Any:
        request, stream = _parse(model_input)
        iterator = self._engine.submit(request)
        if stream:
            return _text_chunks(iterator)
        outcome = await collect(iterator, 1)
        usage = outcome.usage
        return {
            "text": outcome.choices[0].text,
            "finish_reason": outcome.choices[0].finish_reason,
            "usage": {"prompt_tokens": usage.prompt_tokens,
                      "completion_tokens": usage.completion_tokens,
                      "total_tokens": usage.total_tokens},
        }

    async def chat_completions(self, body: Any, request: Request) -> Any:
        call = chat.parse_chat(body)
        iterator = self._engine.submit(call.generation)
        ids: dict[str, Any] = {"completion_id": f"chatcmpl-{request.request_id}",
                               "created": int(time.time()), "model": self._model_name}
        if call.stream:
            return _events(iterator, chat.ChatChunks(include_usage=call.include_usage, **ids))
        return chat.chat_completion(await collect(iterator, call.generation.sampling.n), **ids)

    async def completions(self, body: Any, request: Request) -> Any:
        call = completions.parse_completion(body)
        iterator = self._engine.submit(call.generation)
        ids: dict[str, Any] = {"completion_id": f"cmpl-{request.request_id}",
                               "created": int(time.time()), "model": self._model_name}
        if call.stream:
            return _events(iterator, completions.CompletionChunks(
                include_usage=call.include_usage, **ids))
        return completions.text_completion(
            await collect(iterator, call.generation.sampling.n), **ids)

    async def responses(self, body: Any, request: Request) -> Any:
        call = responses.parse_responses(body)
        iterator = self._engine.submit(call.generation)
        events = responses.ResponseEvents(call, response_id=f"resp_{request.request_id}",
                                          created=int(time.time()), model=self._model_name)
        if call.stream:
            return _events(iterator, events)
        return events.response(await collect(iterator, 1))

    async def messages(self, body: Any, request: Request) -> Any:
        call = anthropic_messages.parse_messages(body)
        iterator = self._engine.submit(call.generation)
        message_id = f"msg_{request.request_id}"
        if call.stream:
            return _events(iterator, anthropic_messages.MessageEvents(
                message_id=message_id, model=self._model_name))
        return anthropic_messages.message(await collect(iterator, 1), message_id=message_id,
                                          model=self._model_name)

    async def embeddings(self, body: Any) -> dict[str, Any]:
        call = embeddings.parse_embeddings(body)
        embeddings.check_dimensions(call, await self._embedder.dimensions_loaded())
        vectors, tokens = await self._embedder.embed(call.texts)
        return embeddings.embeddings_response(vectors, tokens,
                                              encoding_format=call.encoding_format,
                                              model=self._model_name)


async def _events(iterator: ResponseIterator,
                  encoder: StreamEncoder) -> AsyncIterator[dict[str, Any]]:
    for payload in encoder.start():
        yield payload
    async for delta in iterator:
        for payload in encoder.on_delta(delta):
            yield payload
    for payload in encoder.end():
        yield payload


async def _text_chunks(iterator: ResponseIterator) -> AsyncIterator[str]:
    async for delta in iterator:
        if delta.text:
            yield delta.text


def _parse(body: Any) -> tuple[GenerationRequest, bool]:
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object with a prompt or messages")
    for key in body:
        if key not in _KEYS:
            raise InvalidInput(f"{key}: unknown key (known: {', '.join(sorted(_KEYS))})", key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput(f"stream: expected true or false, got {stream!r}", "stream")
    sampling = sampling_from_openai(body)
    if sampling.n != 1:
        raise InvalidInput("n: this model answers with one choice; use n=1", "n")
    prompt, messages = body.get("prompt"), body.get("messages")
    if messages is None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInput("prompt: expected a non-empty string (or give messages)", "prompt")
        messages = [{"role": "user", "content": prompt}]
    elif prompt is not None:
        raise InvalidInput("prompt: give either prompt or messages, not both", "prompt")
    if not isinstance(messages, list) or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        raise InvalidInput("messages: expected a list of {\"role\": str, \"content\": str}",
                           "messages")
    return GenerationRequest(messages=messages, sampling=sampling), stream
