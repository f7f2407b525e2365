"""The OpenAI- and Anthropic-style /v1 calls, written once over any client's predict calls.

Each /v1 API is a route of the model (`chat_completions` is POST /v1/chat/completions over
HTTP, and `route="chat_completions"` on Predict/PredictStream over gRPC), so a mixin only
names the route: the transports already turn a route's answer into JSON, and its stream
into events (HTTP: decoded server-sent events; gRPC: one message per event).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any, Protocol

from clients._sse import SseDecoder

Body = Mapping[str, Any]
"""A /v1 request body, exactly as the OpenAI or Anthropic API takes it."""


class _Transport(Protocol):
    def predict(self, obj: Any, *, route: str = ...) -> Any: ...

    def predict_stream(self, obj: Any, *, route: str = ...) -> Generator[Any, None, None]: ...


class _AsyncTransport(Protocol):
    async def predict(self, obj: Any, *, route: str = ...) -> Any: ...

    def predict_stream(self, obj: Any, *, route: str = ...) -> AsyncGenerator[Any, None]: ...


def streaming(body: Body) -> dict[str, Any]:
    """The body of a `*_stream` call: the APIs stream only when asked to."""
    return {**body, "stream": True}


class _EventReader:
    """A route's stream chunks into events. A model that yields its own SSE text (str or
    bytes chunks; over gRPC they arrive as such) has it decoded as HTTP decodes it."""

    def __init__(self) -> None:
        self._sse: SseDecoder | None = None

    def take(self, chunk: Any) -> list[Any]:
        if isinstance(chunk, (str, bytes)):
            self._sse = self._sse or SseDecoder()
            return self._sse.feed(chunk.encode() if isinstance(chunk, str) else chunk)
        return [chunk]

    def end(self) -> list[Any]:
        return self._sse.end() if self._sse is not None else []


class ApiCalls:
    """The /v1 calls of a blocking client. A `*_stream` call sets `"stream": true` in the
    body and yields the events; closing it early cancels the call and the generation."""

    def chat_completions(self: _Transport, body: Body) -> dict[str, Any]:
        """OpenAI's POST /v1/chat/completions: a `chat.completion` object."""
        answer: dict[str, Any] = self.predict(body, route="chat_completions")
        return answer

    def chat_completions_stream(self: _Transport,
                                body: Body) -> Generator[dict[str, Any], None, None]:
        """`chat.completion.chunk` events (the last one carries usage when asked for)."""
        return _events(self, "chat_completions", body)

    def completions(self: _Transport, body: Body) -> dict[str, Any]:
        """OpenAI's POST /v1/completions: a `text_completion` object."""
        answer: dict[str, Any] = self.predict(body, route="completions")
        return answer

    def completions_stream(self: _Transport,
                           body: Body) -> Generator[dict[str, Any], None, None]:
        return _events(self, "completions", body)

    def embeddings(self: _Transport, body: Body) -> dict[str, Any]:
        """OpenAI's POST /v1/embeddings: a list of `embedding` objects."""
        answer: dict[str, Any] = self.predict(body, route="embeddings")
        return answer

    def messages(self: _Transport, body: Body) -> dict[str, Any]:
        """Anthropic's POST /v1/messages: a `message` object."""
        answer: dict[str, Any] = self.predict(body, route="messages")
        return answer

    def messages_stream(self: _Transport, body: Body) -> Generator[dict[str, Any], None, None]:
        """message_start ... message_stop events."""
        return _events(self, "messages", body)

    def responses(self: _Transport, body: Body) -> dict[str, Any]:
        """OpenAI's POST /v1/responses: a `response` object."""
        answer: dict[str, Any] = self.predict(body, route="responses")
        return answer

    def responses_stream(self: _Transport, body: Body) -> Generator[dict[str, Any], None, None]:
        """response.created ... response.completed (or response.incomplete) events."""
        return _events(self, "responses", body)


class AsyncApiCalls:
    """The /v1 calls of an asyncio client; as ApiCalls, and `aclose()` early cancels."""

    async def chat_completions(self: _AsyncTransport, body: Body) -> dict[str, Any]:
        answer: dict[str, Any] = await self.predict(body, route="chat_completions")
        return answer

    def chat_completions_stream(self: _AsyncTransport,
                                body: Body) -> AsyncGenerator[dict[str, Any], None]:
        return _async_events(self, "chat_completions", body)

    async def completions(self: _AsyncTransport, body: Body) -> dict[str, Any]:
        answer: dict[str, Any] = await self.predict(body, route="completions")
        return answer

    def completions_stream(self: _AsyncTransport,
                           body: Body) -> AsyncGenerator[dict[str, Any], None]:
        return _async_events(self, "completions", body)

    async def embeddings(self: _AsyncTransport, body: Body) -> dict[str, Any]:
        answer: dict[str, Any] = await self.predict(body, route="embeddings")
        return answer

    async def messages(self: _AsyncTransport, body: Body) -> dict[str, Any]:
        answer: dict[str, Any] = await self.predict(body, route="messages")
        return answer

    def messages_stream(self: _AsyncTransport,
                        body: Body) -> AsyncGenerator[dict[str, Any], None]:
        return _async_events(self, "messages", body)

    async def responses(self: _AsyncTransport, body: Body) -> dict[str, Any]:
        answer: dict[str, Any] = await self.predict(body, route="responses")
        return answer

    def responses_stream(self: _AsyncTransport,
                         body: Body) -> AsyncGenerator[dict[str, Any], None]:
        return _async_events(self, "responses", body)


def _events(client: _Transport, route: str,
            body: Body) -> Generator[dict[str, Any], None, None]:
    reader = _EventReader()
    # Closing this generator must close the call's now, not when it is collected.
    with contextlib.closing(client.predict_stream(streaming(body), route=route)) as chunks:
        for chunk in chunks:
            yield from reader.take(chunk)
    yield from reader.end()


async def _async_events(client: _AsyncTransport, route: str,
                        body: Body) -> AsyncGenerator[dict[str, Any], None]:
    reader = _EventReader()
    stream = client.predict_stream(streaming(body), route=route)
    try:
        async for chunk in stream:
            for event in reader.take(chunk):
                yield event
    finally:
        await stream.aclose()  # now: an async generator left to the collector closes late
    for event in reader.end():
        yield event
