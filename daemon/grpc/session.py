"""The Session RPC's frames: a model's session over one bidirectional gRPC stream.

A WebSocket's close handshake, in SessionFrames (proto/twinserve/v1/model.proto): the side
that closes sends a `close` frame; the client answers the daemon's by ending its stream. A
stream that ends without one, or a call that fails, is a client gone away (1006).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from daemon.grpc.errors import REQUEST_ID_KEY
from daemon.grpc.messages import Malformed
from daemon.websocket import ABNORMAL, NORMAL, PROTOCOL_ERROR, Closed
from twinserve_wire.proto.v1.model_pb2 import SessionClose, SessionFrame

Context = grpc.aio.ServicerContext[Any, Any]
# How long the daemon's close frame may wait on a client that does not read.
_CLOSE_TIMEOUT_S = 5.0
# What grpc.aio raises from a read or write once the call is over (cancelled, past its
# deadline, aborted): the client is gone.
_CALL_OVER = (grpc.aio.AioRpcError, grpc.aio.InternalError, grpc.aio.UsageError,
              grpc.aio.AbortError)

# The status a session's call ends with, by its close code: what a gRPC client without our
# client library sees (the close frame before it carries the code itself).
_STATUS_BY_CLOSE = {
    1001: grpc.StatusCode.UNAVAILABLE,
    1002: grpc.StatusCode.INVALID_ARGUMENT,
    1003: grpc.StatusCode.INVALID_ARGUMENT,
    1007: grpc.StatusCode.INVALID_ARGUMENT,
    1008: grpc.StatusCode.PERMISSION_DENIED,
    1009: grpc.StatusCode.RESOURCE_EXHAUSTED,
    1011: grpc.StatusCode.INTERNAL,
}


def status_for_close(code: int) -> grpc.StatusCode:
    """OK for 1000 and the codes a model chooses (4000-4999); the nearest status otherwise."""
    return _STATUS_BY_CLOSE.get(code, grpc.StatusCode.OK)


class GrpcChannel:
    """A session's frames over a grpc.aio bidirectional call (daemon/websocket.py Channel)."""

    def __init__(self, context: Context, request_id: str) -> None:
        self._context = context
        self._request_id = request_id
        self._sent_close: Closed | None = None

    async def accept(self) -> None:
        # Headers before any frame; the client library reads the request id in them as the
        # sign that the session was accepted (a refused call has it in its trailers only).
        await self._context.send_initial_metadata(((REQUEST_ID_KEY, self._request_id),))

    async def receive(self) -> str | bytes | Closed:
        if self._sent_close is not None:
            return self._sent_close
        try:
            message = await self._context.read()
        except _CALL_OVER:
            return Closed(ABNORMAL, "")
        if self._sent_close is not None:  # frames the client sent before it saw our close
            return self._sent_close
        if message is grpc.aio.EOF:
            return Closed(ABNORMAL, "")  # the client ended its stream without closing
        if isinstance(message, Malformed):
            return await self._refuse("a frame is not a valid twinserve.v1.SessionFrame")
        kind = message.WhichOneof("frame")
        if kind == "text":
            return message.text  # type: ignore[no-any-return]
        if kind == "data":
            return message.data  # type: ignore[no-any-return]
        if kind == "close":
            return Closed(message.close.code or NORMAL, message.close.reason)
        return await self._refuse("an empty SessionFrame (neither text, data nor close)")

    async def send(self, frame: str | bytes) -> None:
        message = SessionFrame(text=frame) if isinstance(frame, str) else SessionFrame(data=frame)
        try:
            await self._context.write(message)
        except _CALL_OVER as exc:
            raise ConnectionResetError("the session's call is over") from exc

    async def close(self, code: int, reason: str) -> None:
        if self._sent_close is not None:
            return
        self._sent_close = Closed(code, reason)
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._context.write(SessionFrame(close=SessionClose(code=code,
                                                                          reason=reason)))
        except (TimeoutError, *_CALL_OVER):
            pass  # the client is gone or not reading: the call's status still tells it

    async def _refuse(self, reason: str) -> Closed:
        await self.close(PROTOCOL_ERROR, reason)
        assert self._sent_close is not None
        return self._sent_close
