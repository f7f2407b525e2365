"""The transport-neutral request that both front ends build and model code receives."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol

from daemon import codec
from daemon.errors import InvalidInput, PayloadTooLarge

Transport = Literal["http", "grpc"]


class BodySource(Protocol):
    """Where a request's body comes from; each transport provides one."""

    def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives. Called at most once."""
        ...

    def declared_length(self) -> int | None:
        """The length the client announced up front (Content-Length), if any."""
        ...


class BytesBody:
    """A body that has already arrived whole (a unary gRPC message)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    def declared_length(self) -> int | None:
        return len(self._data)


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of HTTP headers or gRPC metadata."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): v for k, v in (items or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """What model code sees of a call, whichever transport carried it.

    The body is read lazily: a method that takes only the request gets it
    untouched, and may `await body()`, `await json()` or iterate `stream()`.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        route: str,
        body: BodySource,
        max_body_bytes: int,
        request_id: str,
        headers: Headers | None = None,
        query: Mapping[str, str] | None = None,
        path: str = "",
    ) -> None:
        self.transport: Transport = transport
        self.route = route
        self.request_id = request_id
        self.headers = headers or Headers()
        self.query: Mapping[str, str] = query or {}
        self.path = path
        self._body_source = body
        self._max_body_bytes = max_body_bytes
        self._body: bytes | None = None
        self._streamed = False
        # Disconnect signal, readable from async code, sync code (threads) and callbacks.
        self.disconnected = threading.Event()
        self._disconnect_callbacks: list[Callable[[], None]] = []

    # -- body -------------------------------------------------------------------------------

    async def body(self) -> bytes:
        """The whole body, read once and cached; PayloadTooLarge past the limit."""
        if self._body is None:
            parts = [chunk async for chunk in self.stream()]
            self._body = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._body

    async def json(self) -> Any:
        data = await self.body()
        if not data:
            raise InvalidInput("request body is empty; expected JSON")
        return codec.loads(data)

    async def stream(self) -> AsyncIterator[bytes]:
        """Iterate the body as it arrives, without holding it all in memory."""
        if self._body is not None:
            yield self._body
            return
        if self._streamed:
            raise InvalidInput("the request body was already consumed")
        self._streamed = True
        limit = self._max_body_bytes
        declared = self._body_source.declared_length()
        if declared is not None and declared > limit:
            raise PayloadTooLarge(limit)
        seen = 0
        async for chunk in self._body_source.chunks():
            seen += len(chunk)
            if seen > limit:
                raise PayloadTooLarge(limit)
            yield chunk

    # -- disconnects --------------------------------------------------------------------------

    async def is_disconnected(self) -> bool:
        return self.disconnected.is_set()

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when the client goes away (at once if it has). Returns an unregister."""
        if self.disconnected.is_set():
            callback()
            return _noop
        self._disconnect_callbacks.append(callback)

        def unregister() -> None:
            try:
                self._disconnect_callbacks.remove(callback)
            except ValueError:
                pass

        return unregister

    def mark_disconnected(self) -> None:
        """Called by the pipeline when the transport reports the client gone. Idempotent."""
        if self.disconnected.is_set():
            return
        self.disconnected.set()
        callbacks, self._disconnect_callbacks = self._disconnect_callbacks, []
        for callback in callbacks:
            callback()

    def __repr__(self) -> str:
        return f"<Request {self.transport} {self.route} id={self.request_id}>"


def _noop() -> None:
    return None


current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "twinserve_current_request", default=None
)
"""The request being handled; the engine ties new generations to it for cancellation."""


def cancel_with_current_request(cancel: Callable[[], None]) -> Callable[[], None]:
    """Tie `cancel` to the request in this context, so a disconnect triggers it.

    Returns an unregister function; a no-op outside request handling.
    """
    request = current_request.get()
    if request is None:
        return _noop
    return request.on_disconnect(cancel)
