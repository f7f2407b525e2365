"""Session frames over a WebSocket to `/v1/websocket` (the `websockets` library)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import websockets
import websockets.asyncio.client
import websockets.sync.client

from clients._errors import TwinserveError, error_from_http
from clients._session import ABNORMAL, Closed

PATH = "/v1/websocket"


def websocket_url(base_url: str) -> str:
    """http(s)://host:port[/prefix] -> ws(s)://host:port[/prefix]/v1/websocket."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{PATH}"


def _refusal(exc: websockets.exceptions.InvalidStatus) -> TwinserveError:
    """The daemon refused the upgrade (key, readiness, overload): its JSON error answer."""
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    error = error_from_http(response.status_code, body)
    if error.request_id is None:
        error.request_id = response.headers.get("x-request-id")
    return error


def _closed(exc: websockets.exceptions.ConnectionClosed) -> Closed:
    """The close the server sent, or ABNORMAL if the connection dropped without one."""
    received = exc.rcvd
    return Closed(received.code, received.reason) if received is not None else \
        Closed(ABNORMAL, "")


def _final(ws: websockets.sync.client.ClientConnection
           | websockets.asyncio.client.ClientConnection) -> Closed:
    """The server's close: its answer to ours, or the one it sent first."""
    return Closed(ws.close_code or ABNORMAL, ws.close_reason or "")


def _request_id(ws: websockets.sync.client.ClientConnection
                | websockets.asyncio.client.ClientConnection) -> str | None:
    return ws.response.headers.get("x-request-id") if ws.response is not None else None


def _unreachable(exc: Exception) -> TwinserveError:
    return TwinserveError("UNAVAILABLE", f"cannot open a WebSocket session: {exc}")


class HttpFrames:
    """Blocking (clients/_session.py Frames)."""

    def __init__(self, base_url: str, headers: Mapping[str, str],
                 timeout: float | None) -> None:
        try:
            # No size limit of the client's own: the daemon's runtime.max_frame_bytes
            # decides. No compression: sessions carry small realtime frames and audio,
            # where it costs latency and saves little.
            connection = websockets.sync.client.connect(
                websocket_url(base_url), additional_headers=dict(headers),
                open_timeout=timeout, max_size=None, compression=None)
            # Held open until close(), which closes it: the context manager's job, done by
            # hand (websockets warns about a connection used without it).
            self._ws = connection.__enter__()
        except websockets.exceptions.InvalidStatus as exc:
            raise _refusal(exc) from exc
        except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise _unreachable(exc) from exc
        self.request_id = _request_id(self._ws)

    def send(self, frame: str | bytes) -> Closed | None:
        try:
            self._ws.send(frame)
        except websockets.exceptions.ConnectionClosed as exc:
            return _closed(exc)
        return None

    def receive(self) -> str | bytes | Closed:
        try:
            return self._ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            return _closed(exc)

    def close(self, code: int, reason: str) -> Closed:
        self._ws.close(code, reason)
        return _final(self._ws)

    def abort(self) -> None:
        self._ws.close_socket()


class AsyncHttpFrames:
    """asyncio (clients/_session.py AsyncFrames); `open()` connects."""

    def __init__(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        self._ws = ws
        self.request_id = _request_id(ws)

    @classmethod
    async def open(cls, base_url: str, headers: Mapping[str, str],
                   timeout: float | None) -> AsyncHttpFrames:
        try:
            ws = await websockets.asyncio.client.connect(  # options as HttpFrames'
                websocket_url(base_url), additional_headers=dict(headers),
                open_timeout=timeout, max_size=None, compression=None)
        except websockets.exceptions.InvalidStatus as exc:
            raise _refusal(exc) from exc
        except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise _unreachable(exc) from exc
        return cls(ws)

    async def send(self, frame: str | bytes) -> Closed | None:
        try:
            await self._ws.send(frame)
        except websockets.exceptions.ConnectionClosed as exc:
            return _closed(exc)
        return None

    async def receive(self) -> str | bytes | Closed:
        try:
            return await self._ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            return _closed(exc)

    async def close(self, code: int, reason: str) -> Closed:
        await self._ws.close(code, reason)
        return _final(self._ws)

    def abort(self) -> None:
        self._ws.transport.abort()
