"""A session with a model's `websocket` method, the same object over either transport.

    with HttpClient("http://127.0.0.1:8080") as client:      # or GrpcClient("127.0.0.1:50051")
        with client.websocket() as session:
            session.send_text("hello")
            session.receive_text()
            session.send_json({"x": 1})
            for frame in session:   # str or bytes frames, until the server closes
                ...

The transports differ only in how frames travel (_session_http.py: a WebSocket;
_session_grpc.py: the Session RPC); what a user calls is written once here, blocking and
asyncio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, NamedTuple, Protocol

NORMAL = 1000
ABNORMAL = 1006  # the connection or call dropped without a close


class Closed(NamedTuple):
    """How a session ended: the close code and reason (RFC 6455 codes on both transports)."""

    code: int
    reason: str


class SessionClosed(Exception):
    """The session is over, so nothing more can be received or sent.

    Attributes:
        code: the close code (1000 normal, 1001 the server is going away or the session was
            idle, 1011 the model failed, 1006 the connection dropped, 4000-4999 the model's own).
        reason: the close reason the server gave.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"session closed ({code}){': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason


class Frames(Protocol):
    """One transport's frames, blocking. `receive` gives Closed once the session is over."""

    request_id: str | None  # the daemon's id for the session, as its log names it

    def send(self, frame: str | bytes) -> Closed | None:
        """Send a frame; Closed (and nothing sent) if the session is over."""
        ...

    def receive(self) -> str | bytes | Closed: ...

    def close(self, code: int, reason: str) -> Closed: ...

    def abort(self) -> None: ...


class AsyncFrames(Protocol):
    request_id: str | None
    async def send(self, frame: str | bytes) -> Closed | None: ...

    async def receive(self) -> str | bytes | Closed: ...

    async def close(self, code: int, reason: str) -> Closed: ...

    def abort(self) -> None: ...


class _Ends:
    """Where a session stands, shared by the blocking and asyncio sessions."""

    closed: Closed | None = None  # set once the session is over

    def _open_for(self, frame: str | bytes) -> str | bytes:
        if self.closed is not None:
            raise SessionClosed(*self.closed)
        return frame

    def _taken(self, got: str | bytes | Closed) -> str | bytes:
        if isinstance(got, Closed):
            self._over(got)
        return got  # type: ignore[return-value]  # _over raised

    def _over(self, closed: Closed | None) -> None:
        if closed is not None:
            self.closed = closed
            raise SessionClosed(*closed)


class Session(_Ends):
    """A blocking session; a context manager that closes it (1000) on leaving.

    Attributes:
        request_id: the daemon's id for the session (the `x-request-id` header sent, or
            one it made), as its log lines name it.
        closed: how the session ended, once it has.
    """

    def __init__(self, frames: Frames) -> None:
        self._frames = frames
        self.request_id = frames.request_id

    def send_text(self, text: str) -> None:
        self._over(self._frames.send(self._open_for(text)))

    def send_bytes(self, data: bytes) -> None:
        self._over(self._frames.send(self._open_for(bytes(data))))

    def send_json(self, value: Any) -> None:
        """A text frame holding `value` as JSON, as starlette's send_json sends it."""
        self.send_text(_dumps(value))

    def receive(self) -> str | bytes:
        """The next frame: str (text) or bytes (binary). SessionClosed once it is over."""
        if self.closed is not None:
            raise SessionClosed(*self.closed)
        return self._taken(self._frames.receive())

    def receive_text(self) -> str:
        return _text(self.receive())

    def receive_bytes(self) -> bytes:
        return _bytes(self.receive())

    def receive_json(self) -> Any:
        return json.loads(self.receive())

    def __iter__(self) -> Iterator[str | bytes]:
        """The frames until the server closes the session."""
        while self.closed is None:
            try:
                yield self.receive()
            except SessionClosed:
                return

    def close(self, code: int = NORMAL, reason: str = "") -> Closed:
        """Close the session (if the server has not) and wait for the server to end it."""
        if self.closed is None:
            self.closed = self._frames.close(code, reason)
        return self.closed

    def abort(self) -> None:
        """Drop the session without a close, as a lost connection would: the model's next
        receive raises the disconnect with code 1006."""
        if self.closed is None:
            self.closed = Closed(ABNORMAL, "")
            self._frames.abort()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSession(_Ends):
    """An asyncio session; as Session, with `async with` and `async for`."""

    def __init__(self, frames: AsyncFrames) -> None:
        self._frames = frames
        self.request_id = frames.request_id

    async def send_text(self, text: str) -> None:
        self._over(await self._frames.send(self._open_for(text)))

    async def send_bytes(self, data: bytes) -> None:
        self._over(await self._frames.send(self._open_for(bytes(data))))

    async def send_json(self, value: Any) -> None:
        await self.send_text(_dumps(value))

    async def receive(self) -> str | bytes:
        if self.closed is not None:
            raise SessionClosed(*self.closed)
        return self._taken(await self._frames.receive())

    async def receive_text(self) -> str:
        return _text(await self.receive())

    async def receive_bytes(self) -> bytes:
        return _bytes(await self.receive())

    async def receive_json(self) -> Any:
        return json.loads(await self.receive())

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while self.closed is None:
            try:
                yield await self.receive()
            except SessionClosed:
                return

    async def close(self, code: int = NORMAL, reason: str = "") -> Closed:
        if self.closed is None:
            self.closed = await self._frames.close(code, reason)
        return self.closed

    def abort(self) -> None:
        """As Session.abort."""
        if self.closed is None:
            self.closed = Closed(ABNORMAL, "")
            self._frames.abort()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class OpeningSession:
    """What an asyncio client's `websocket()` returns: await it for the session, or use it
    as `async with client.websocket() as session:`, which closes the session on leaving."""

    def __init__(self, open_frames: Callable[[], Awaitable[AsyncFrames]]) -> None:
        self._open_frames = open_frames
        self._session: AsyncSession | None = None

    async def _open(self) -> AsyncSession:
        self._session = AsyncSession(await self._open_frames())
        return self._session

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncSession:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(frame: str | bytes) -> str:
    if not isinstance(frame, str):
        raise TypeError("expected a text frame, got a binary one")
    return frame


def _bytes(frame: str | bytes) -> bytes:
    if not isinstance(frame, bytes):
        raise TypeError("expected a binary frame, got a text one")
    return frame
