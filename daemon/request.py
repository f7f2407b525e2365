"""The transport-neutral request that both front ends build and model code receives."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import os
import threading
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

from daemon import codec
from daemon.body_memory import BodyMemory
from daemon.body_prefetch import BodyPrefetch
from daemon.config import RuntimeConfig
from daemon.errors import BodyTimeout, InvalidInput, PayloadTooLarge, TwinserveError

Transport = Literal["http", "grpc"]
T = TypeVar("T")


SMALL_BODY_BYTES = 64 * 1024
"""Bodies up to this size take no share of the body memory: parsed, they cost at most a few
MiB, and the admission line bounds how many wait at once."""


class BodySource(Protocol):
    """Where a request's body comes from; each transport provides one.

    A source only hands over bytes: the size limit is the `Request`'s to enforce, in one
    place, whichever transport carried the body. Exactly one of `received` or `chunks` takes
    the body, at most once; `received` may decline first (None), and then `chunks` is called.
    """

    def received(self) -> bytes | None:
        """The whole body if it has all arrived already (a small one comes with the call),
        without waiting; None if it has to be read."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives."""
        ...

    def declared_length(self) -> int | None:
        """The length the client announced up front (Content-Length), if any."""
        ...


class BytesBody:
    """A body that has already arrived whole (a unary gRPC message)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def received(self) -> bytes:
        return self._data

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    def declared_length(self) -> int | None:
        return len(self._data)


@dataclasses.dataclass(frozen=True)
class BodyLimits:
    """How large a body may be, and how slowly it may arrive (runtime.max_request_bytes,
    body_idle_timeout_s, body_timeout_s; None: no time limit). The `Request` enforces them,
    in one place, for every transport and way of reading."""

    max_bytes: int
    idle_timeout_s: float | None = None
    timeout_s: float | None = None
    memory: BodyMemory | None = None  # runtime.max_body_memory_bytes, shared by all requests

    @classmethod
    def of(cls, runtime: RuntimeConfig, memory: BodyMemory | None) -> BodyLimits:
        return cls(runtime.max_request_bytes, runtime.body_idle_timeout_s,
                   runtime.body_timeout_s, memory)

    def check_size(self, size: int) -> None:
        """The one check of runtime.max_request_bytes: PayloadTooLarge past it."""
        if size > self.max_bytes:
            raise PayloadTooLarge(self.max_bytes)


@dataclasses.dataclass(frozen=True)
class Response:
    """A model's answer with its own bytes, status and content type, sent as is."""

    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


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

    # What most calls leave as it is, as class defaults: a request is built on every call,
    # so its constructor sets only what each call brings.
    _query: Mapping[str, str] = MappingProxyType({})
    _path = ""
    _body: bytes | None = None
    _streamed = False
    _memory_held = 0
    _prefetch: BodyPrefetch | None = None  # while_waiting() took in the body's first bytes
    disconnect_reason: str | None = None
    # What the client is told when the server ended the call (daemon/model/interrupt.py).
    interrupted_by: Callable[[], TwinserveError] | None = None
    started_at: float | None = None  # loop time the call began; the body timeouts count from it
    _disconnected_event: threading.Event | None = None  # made on first use
    _state: types.SimpleNamespace | None = None  # made on first use
    _disconnect_callbacks: list[Callable[[], None]] | None = None  # made on first use

    def __init__(
        self,
        *,
        transport: Transport,
        route: str,
        request_id: str,
        body: BodySource,
        limits: BodyLimits,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        path: str = "",
    ) -> None:
        self.transport: Transport = transport
        self.content_type = content_type
        self.route = route
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers if headers is not None else Headers()
        self._body_source = body
        self._limits = limits
        if query:
            self._query = query
        if path:
            self._path = path

    @property
    def query(self) -> Mapping[str, str]:
        """The URL's query parameters (HTTP); empty on gRPC."""
        return self._query

    @property
    def path(self) -> str:
        """The URL's path (HTTP); empty on gRPC."""
        return self._path

    # -- body -------------------------------------------------------------------------------

    async def body(self) -> bytes:
        """The whole body, read once and cached; PayloadTooLarge past the limit.

        A body larger than SMALL_BODY_BYTES holds its share of runtime.max_body_memory_bytes
        (daemon/body_memory.py) from before it is read until the call ends."""
        body = self.received_body()
        memory = self._limits.memory
        if memory is None or self._memory_held or (body is not None
                                                   and len(body) <= SMALL_BODY_BYTES):
            if body is None:
                body = self._body = await self._read_all()
            return body
        form = codec.form_of(self.content_type)
        if body is not None:  # here already (a unary gRPC message): measure it, then wait
            self._memory_held = await memory.reserve(codec.parsed_size_bound(body, form))
            return body
        declared = self._body_source.declared_length()
        worst = codec.parsed_size_worst(self._limits.max_bytes if declared is None else declared,
                                        form)
        self._memory_held = await memory.reserve(min(worst, memory.capacity))
        body = self._body = await self._read_all()
        held, self._memory_held = self._memory_held, 0  # keep() frees it if it raises
        self._memory_held = memory.keep(held, codec.parsed_size_bound(body, form))
        return body

    async def _read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self.stream()])

    async def while_waiting(self, waiting: Awaitable[T]) -> T:
        """Await `waiting` (the call's turn for a slot), taking in the body's first bytes
        meanwhile (daemon/body_prefetch.py) so that its idle time counts from their arrival;
        BodyTimeout if the body stalls before the turn comes."""
        idle_s = self._limits.idle_timeout_s
        if self._body is not None or self._streamed or idle_s is None:
            return await waiting
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        started_at = self.started_at if self.started_at is not None else loop.time()
        prefetch = self._prefetch = BodyPrefetch(aiter(self._body_source.chunks()), loop,
                                                 started_at)
        expired: list[bool] = []  # [whole] once the body stalled while waiting

        def expire(whole: bool) -> None:
            expired.append(whole)
            task.cancel()

        prefetch.expire_if_stalled(idle_s, self._limits.timeout_s, expire)
        try:
            return await waiting
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            raise BodyTimeout(None if expired[0] else idle_s) from None
        finally:
            prefetch.stop_expiring()

    def release_body(self) -> None:
        """The call is over: give back its body's share of the body memory, and stop a read
        of it still in flight."""
        if self._memory_held and self._limits.memory is not None:
            self._limits.memory.release(self._memory_held)
            self._memory_held = 0
        if self._prefetch is not None:
            self._prefetch.close()

    def received_body(self) -> bytes | None:
        """The whole body if it is here already, without waiting (`body()` waits): a small
        one usually comes with the call. None if it has yet to arrive."""
        if self._body is None:
            if self._streamed:
                raise InvalidInput("the request body was already consumed by stream()")
            if self._prefetch is not None:
                return None  # partly taken in already: it is read through stream()
            self._body = self._body_source.received()
            if self._body is None:  # to be read: refuse it now if it says it is too large
                self._limits.check_size(self._body_source.declared_length() or 0)
            else:
                self._streamed = True
                self._limits.check_size(len(self._body))
        return self._body

    async def json(self) -> Any:
        return codec.loads(await self.body())

    async def stream(self) -> AsyncIterator[bytes]:
        """Iterate the body as it arrives, without holding it all in memory."""
        if self._body is not None:
            yield self._body
            return
        if self._streamed:
            raise InvalidInput("the request body was already consumed by stream()")
        self._streamed = True
        self._limits.check_size(self._body_source.declared_length() or 0)  # before reading any
        seen = 0
        idle_s, total_s = self._limits.idle_timeout_s, self._limits.timeout_s
        loop = asyncio.get_running_loop()
        # Counted from when the call began, not from when the model started reading: a body
        # that stalled while its call waited for a slot has used up its time already.
        last = self.started_at if self.started_at is not None else loop.time()
        deadline = None if total_s is None else last + total_s
        chunks: AsyncIterator[bytes]
        if self._prefetch is None:
            chunks = aiter(self._body_source.chunks())
        else:
            pieces, last = self._prefetch.take(last)
            for piece in pieces:
                seen += len(piece)
                self._limits.check_size(seen)
                yield piece
            chunks = self._prefetch.rest()
        task = asyncio.current_task()
        assert task is not None

        def cancel_read() -> None:
            task.cancel()

        while True:
            # A client that leaves ends the read at once, even for model code given time to
            # end its own work (daemon/model/grace.py): the rest of the body will not come.
            unregister = self.on_disconnect(cancel_read)
            try:
                chunk = await _next_within(chunks, idle_s, last, deadline, loop)
            except StopAsyncIteration:
                return
            except ConnectionError:
                # The transport saw the client leave mid-body (aiohttp says so before it
                # cancels the call): the read ends as if cancelled, as it would have been.
                unregister()
                self.mark_disconnected()
                raise asyncio.CancelledError from None
            finally:
                unregister()
            last = loop.time()
            seen += len(chunk)
            self._limits.check_size(seen)
            yield chunk

    # -- disconnects --------------------------------------------------------------------------

    async def is_disconnected(self) -> bool:
        return self.disconnect_reason is not None

    @property
    def disconnected(self) -> threading.Event:
        """Set once the client has gone away; for sync model code running in threads."""
        if self._disconnected_event is None:
            self._disconnected_event = threading.Event()
            if self.disconnect_reason is not None:
                self._disconnected_event.set()
        return self._disconnected_event

    @property
    def state(self) -> types.SimpleNamespace:
        """Attributes model code may set, as on starlette's Request, starting with Truss's
        `watch_disconnect()`: a context manager giving `disconnected`, for sync code."""
        if self._state is None:
            self._state = types.SimpleNamespace(
                watch_disconnect=lambda: contextlib.nullcontext(self.disconnected))
        return self._state

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when the client goes away (at once if it has). Returns an unregister."""
        if self.disconnect_reason is not None:
            callback()
            return _noop
        if self._disconnect_callbacks is None:
            self._disconnect_callbacks = []
        callbacks = self._disconnect_callbacks
        callbacks.append(callback)

        def unregister() -> None:
            try:
                callbacks.remove(callback)
            except ValueError:
                pass

        return unregister

    def mark_disconnected(self, reason: str = "client_disconnect") -> None:
        """The call is over for the client: it left ("client_disconnect"), ran out of time
        ("timeout"), or the server is shutting down ("drain"). Idempotent; the first reason
        is kept in `disconnect_reason`."""
        if self.disconnect_reason is not None:
            return
        self.disconnect_reason = reason
        if self._disconnected_event is not None:
            self._disconnected_event.set()
        callbacks, self._disconnect_callbacks = self._disconnect_callbacks, None
        for callback in callbacks or ():
            callback()

    def __repr__(self) -> str:
        return f"<Request {self.transport} {self.route} id={self.request_id}>"


def _noop() -> None:
    return None


_ARRIVED_GRACE_S = 0.25


async def _next_within(chunks: AsyncIterator[bytes], idle_s: float | None, last: float,
                       deadline: float | None, loop: asyncio.AbstractEventLoop) -> bytes:
    """The next chunk of a body; BodyTimeout if nothing has come for `idle_s` since `last`
    (loop time), or the whole body runs past `deadline`; StopAsyncIteration at the end."""
    if deadline is not None and (idle_s is None or deadline < last + idle_s):
        until, whole = deadline, True
    elif idle_s is not None:
        until, whole = last + idle_s, False
    else:
        return await anext(chunks)
    # Time to take a chunk that arrived while the call waited for its slot, even when its
    # time is up: the transport may need a round of the loop to hand it over (gRPC does).
    until = max(until, loop.time() + _ARRIVED_GRACE_S)
    try:
        # Not wait_for: on 3.11 it can swallow the task's own cancel (a client that left)
        # when the read finishes at the same moment.
        async with asyncio.timeout_at(until):
            return await anext(chunks)
    except TimeoutError:
        raise BodyTimeout(None if whole else idle_s) from None


_id_format = os.urandom(6).hex() + "%08x"
_id_counter = itertools.count(1)


REQUEST_ID_HEADER = "X-Request-Id"
"""Where a request's id travels, both ways: an HTTP header, and gRPC metadata (in lower case,
as gRPC requires)."""


def new_request_id() -> str:
    """Unique per process and across restarts; cheaper than a uuid4 on every request."""
    return _id_format % next(_id_counter)


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
