"""`GET /v1/websocket`: a model's session over a WebSocket (aiohttp's WebSocketResponse).

The route is wrapped in the error boundary like any other, so a session refused before the
upgrade (wrong key, not ready, overloaded) gets the HTTP error every route gives; after the
upgrade, every outcome is a close (daemon/model/session.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from daemon.config import TransportConfig
from daemon.http.body import HttpBody
from daemon.http.boundary import Handler
from daemon.http.headers import REQUEST_ID
from daemon.http.request import HttpRequest
from daemon.model.pipeline import ModelPipeline
from daemon.websocket import ABNORMAL, Closed

PATH = "/v1/websocket"
ROUTE = "websocket"
# How long a close waits for the client's answering close frame (and for it to read ours).
_CLOSE_TIMEOUT_S = 5.0


class _WebSocketResponse(web.WebSocketResponse):
    """aiohttp waits heartbeat / 2 for a ping's pong; Truss's runtime.transport sets that
    wait on its own (ping_timeout_seconds), so it is set here after aiohttp's own."""

    def __init__(self, transport: TransportConfig, max_frame_bytes: int) -> None:
        super().__init__(heartbeat=transport.ping_interval_seconds,
                         max_msg_size=max_frame_bytes, timeout=_CLOSE_TIMEOUT_S)
        if transport.ping_interval_seconds and transport.ping_timeout_seconds:
            self._pong_heartbeat = transport.ping_timeout_seconds


class AiohttpChannel:
    """A session's frames over one aiohttp WebSocketResponse (daemon/websocket.py Channel)."""

    def __init__(self, request: web.Request, transport: TransportConfig,
                 max_frame_bytes: int) -> None:
        self._request = request
        self.response = _WebSocketResponse(transport, max_frame_bytes)

    async def accept(self) -> None:
        await self.response.prepare(self._request)

    async def receive(self) -> str | bytes | Closed:
        message = await self.response.receive()
        kind = message.type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            return message.data  # type: ignore[no-any-return]
        if kind is WSMsgType.CLOSE:  # the client's close frame (aiohttp has answered it)
            return Closed(message.data, message.extra or "")
        if kind is WSMsgType.ERROR:  # a frame aiohttp refused (it has closed with `code`)
            return Closed(getattr(message.data, "code", ABNORMAL), "")
        # CLOSING / CLOSED: our own close, or the connection dropped.
        return Closed(self.response.close_code or ABNORMAL, "")

    async def send(self, frame: str | bytes) -> None:
        # aiohttp raises ConnectionResetError (a ConnectionError) once the client is gone.
        if isinstance(frame, str):
            await self.response.send_str(frame)
        else:
            await self.response.send_bytes(frame)

    async def close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self.response.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError):
            pass  # aiohttp has dropped the connection: nothing more to say to this client


def session_handler(pipeline: ModelPipeline, transport: TransportConfig,
                    max_frame_bytes: int) -> Handler:
    """The route's handler, for daemon/http/boundary.py to wrap."""
    limits = pipeline.body_limits

    async def websocket(request: web.Request, request_id: str) -> web.StreamResponse:
        channel = AiohttpChannel(request, transport, max_frame_bytes)
        if not channel.response.can_prepare(request).ok:
            raise web.HTTPUpgradeRequired(
                text=f"{PATH} takes WebSocket connections only (Upgrade: websocket)",
                headers={"Upgrade": "websocket"})
        channel.response.headers[REQUEST_ID] = request_id
        twin = HttpRequest(transport="http", route=ROUTE, request_id=request_id,
                           body=HttpBody(request), limits=limits, headers=request.headers)
        await pipeline.session(twin, channel)
        return channel.response

    return websocket
