"""The session a model's `websocket` method is given, whichever transport carries it.

It behaves like starlette's `WebSocket` for what models use (Truss models annotate it
`fastapi.WebSocket`): `receive_text/bytes/json`, `send_text/bytes/json`, `iter_*`,
`close(code, reason)`, the ASGI-style `receive()`/`send()`, `client_state`, `headers` and
`query_params`. twinserve never imports starlette; when the model has, the disconnect it
raises is also an instance of starlette's `WebSocketDisconnect`, and the states are
starlette's `WebSocketState`, so `except fastapi.WebSocketDisconnect` and
`websocket.client_state == WebSocketState.CONNECTED` keep working.

A transport provides a `Channel` (http/session.py over aiohttp's WebSocketResponse,
grpc/session.py over a bidirectional stream); everything else about a session, what the
model sees and how it ends, is written once, here and in daemon/model/session.py.
"""

from __future__ import annotations

import enum
import sys
import time
import types
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple, Protocol

from daemon import codec
from daemon.errors import InvalidInput
from daemon.request import Request

# RFC 6455 close codes the daemon sends or reports.
NORMAL = 1000
GOING_AWAY = 1001  # the daemon is shutting down, or the session sat idle too long
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003  # a text frame where the model reads bytes, or the reverse
ABNORMAL = 1006  # the client went away without a close frame (never sent on the wire)
INVALID_DATA = 1007  # not UTF-8, or not the JSON the model asked for
TOO_BIG = 1009  # a frame larger than runtime.max_frame_bytes
SERVER_ERROR = 1011  # the model raised
MAX_REASON_BYTES = 123  # what fits in a close frame besides its code


class WebSocketState(enum.Enum):
    """starlette.websockets.WebSocketState, for models that have not imported starlette."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    RESPONSE = 3


class WebSocketDisconnect(Exception):
    """The session is over for the client: it closed, or went away (code 1006)."""

    def __init__(self, code: int = NORMAL, reason: str | None = None) -> None:
        super().__init__(code, reason or "")
        self.code = code
        self.reason = reason or ""


class BadFrame(Exception):
    """The client sent a frame the model cannot take (a binary frame to `receive_text`, bad
    JSON to `receive_json`, one too large): the session closes with `code`, a client error
    rather than a model failure."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Closed(NamedTuple):
    """What a channel's receive gives once the session is over: the close frame's code and
    reason, or ABNORMAL if the client went away without one."""

    code: int
    reason: str


class Channel(Protocol):
    """One transport's side of a session. Frames are str (text) or bytes (binary)."""

    async def accept(self) -> None:
        """Tell the client the session is open (HTTP: the 101 answer; gRPC: headers)."""
        ...

    async def receive(self) -> str | bytes | Closed:
        """The client's next frame; Closed once the session is over, whoever closed it. A
        receive waiting when the server closes returns Closed with the server's code."""
        ...

    async def send(self, frame: str | bytes) -> None:
        """Send a frame; raises ConnectionError when the client is gone."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Send the close (once); never raises, and gives up on a client that does not
        read within the transport's close timeout."""
        ...


def disconnect(code: int, reason: str = "") -> WebSocketDisconnect:
    """The disconnect to raise: also starlette's WebSocketDisconnect if the model uses it."""
    starlette = sys.modules.get("starlette.websockets")
    if starlette is None:
        return WebSocketDisconnect(code, reason)
    global _starlette_disconnect
    if _starlette_disconnect is None:
        _starlette_disconnect = types.new_class(
            "WebSocketDisconnect", (WebSocketDisconnect, starlette.WebSocketDisconnect))
    return _starlette_disconnect(code, reason)


_starlette_disconnect: type[WebSocketDisconnect] | None = None


def _state(state: WebSocketState) -> Any:
    starlette = sys.modules.get("starlette.websockets")
    return state if starlette is None else starlette.WebSocketState(state.value)


class WebSocket:
    """A model's side of one session (see the module docstring). The daemon has accepted it
    before the model's method runs, as Truss does; `accept()` is then a no-op."""

    def __init__(self, channel: Channel, request: Request, *, max_frame_bytes: int) -> None:
        self._channel = channel
        self.request = request  # the call's record: id, headers, disconnect state
        self._max_frame_bytes = max_frame_bytes
        self.frames_received = self.frames_sent = 0
        self._client = WebSocketState.CONNECTING
        self._application = WebSocketState.CONNECTING
        self.close_code: int | None = None  # how the session ended, once it has
        self.close_reason = ""
        self.last_activity = time.monotonic()  # a frame last moved either way
        self.state = types.SimpleNamespace()

    # -- what starlette's WebSocket also has --------------------------------------------

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def query_params(self) -> Mapping[str, str]:
        """The URL's query parameters (HTTP); empty on gRPC."""
        return self.request.query

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def client_state(self) -> Any:
        return _state(self._client)

    @property
    def application_state(self) -> Any:
        return _state(self._application)

    async def accept(self, subprotocol: str | None = None,
                     headers: Any = None) -> None:
        if self._application is WebSocketState.CONNECTING:
            await self._channel.accept()
            self._client = self._application = WebSocketState.CONNECTED

    async def receive(self) -> dict[str, Any]:
        """The next message, ASGI-style: `websocket.receive` with `text` or `bytes`, or
        `websocket.disconnect` with `code` and `reason` once the client has closed."""
        try:
            frame = await self._next()
        except WebSocketDisconnect as gone:
            return {"type": "websocket.disconnect", "code": gone.code, "reason": gone.reason}
        key = "text" if isinstance(frame, str) else "bytes"
        return {"type": "websocket.receive", key: frame}

    async def receive_text(self) -> str:
        frame = await self._next()
        if not isinstance(frame, str):
            raise BadFrame(UNSUPPORTED_DATA, "expected a text frame, got a binary one")
        return frame

    async def receive_bytes(self) -> bytes:
        frame = await self._next()
        if not isinstance(frame, bytes):
            raise BadFrame(UNSUPPORTED_DATA, "expected a binary frame, got a text one")
        return frame

    async def receive_json(self, mode: str = "text") -> Any:
        frame = await (self.receive_text() if mode == "text" else self.receive_bytes())
        try:
            return codec.loads(frame.encode() if isinstance(frame, str) else frame)
        except InvalidInput as exc:
            raise BadFrame(INVALID_DATA, str(exc).replace("request body", "frame")) from None

    async def iter_text(self) -> AsyncIterator[str]:
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            pass

    async def iter_json(self) -> AsyncIterator[Any]:
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            pass

    async def send(self, message: Mapping[str, Any]) -> None:
        """ASGI-style: `websocket.send` with `text` or `bytes`, `websocket.close`, or
        `websocket.accept`."""
        kind = message.get("type")
        if kind == "websocket.send":
            text = message.get("text")
            await self._send(text if text is not None else bytes(message["bytes"]))
        elif kind == "websocket.close":
            await self.close(message.get("code", NORMAL), message.get("reason"))
        elif kind == "websocket.accept":
            await self.accept()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    async def send_text(self, data: str) -> None:
        await self._send(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(bytes(data))

    async def send_json(self, data: Any, mode: str = "text") -> None:
        encoded = codec.dumps(data)
        await self._send(encoded.decode() if mode == "text" else encoded)

    async def close(self, code: int = NORMAL, reason: str | None = None) -> None:
        if self._application is WebSocketState.DISCONNECTED:
            raise RuntimeError('Cannot call "close" once a close message has been sent.')
        await self.end(code, reason or "")

    # -- the daemon's side ------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Neither side has closed: the daemon still owes the client a close."""
        return self.close_code is None

    async def end(self, code: int, reason: str) -> None:
        """Close the session from the server's side (the model's close, an error, the drain),
        unless it is over already."""
        self._application = WebSocketState.DISCONNECTED
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, _clip(reason)
        await self._channel.close(code, self.close_reason)

    def client_gone(self) -> None:
        """The client went away without closing (its connection or call dropped)."""
        self._client = WebSocketState.DISCONNECTED
        if self.close_code is None:
            self.close_code = ABNORMAL

    async def _next(self) -> str | bytes:
        if self._client is not WebSocketState.CONNECTED:
            if self._client is WebSocketState.CONNECTING:
                raise RuntimeError('WebSocket is not connected. Need to call "accept" first.')
            raise disconnect(self.close_code or ABNORMAL, self.close_reason)
        frame = await self._channel.receive()
        self.last_activity = time.monotonic()
        if isinstance(frame, Closed):
            self._client = WebSocketState.DISCONNECTED
            if self.close_code is None:
                self.close_code, self.close_reason = frame.code, frame.reason
            raise disconnect(frame.code, frame.reason)
        if len(frame) > self._max_frame_bytes // 4:  # a shorter text cannot be too big
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if size > self._max_frame_bytes:
                raise BadFrame(TOO_BIG, f"frame of {size} bytes is larger than "
                                        f"runtime.max_frame_bytes ({self._max_frame_bytes})")
        self.frames_received += 1
        return frame

    async def _send(self, frame: str | bytes) -> None:
        if self._application is not WebSocketState.CONNECTED:
            if self._application is WebSocketState.CONNECTING:
                raise RuntimeError('WebSocket is not connected. Need to call "accept" first.')
            raise RuntimeError('Cannot call "send" once a close message has been sent.')
        if self._client is WebSocketState.DISCONNECTED:
            raise disconnect(self.close_code or ABNORMAL, self.close_reason)
        try:
            await self._channel.send(frame)
        except ConnectionError:
            self.client_gone()
            raise disconnect(ABNORMAL) from None
        self.last_activity = time.monotonic()
        self.frames_sent += 1


def _clip(reason: str) -> str:
    """A close reason cut to what a close frame carries (123 bytes of UTF-8)."""
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode(errors="ignore")
