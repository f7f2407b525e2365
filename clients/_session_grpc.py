"""Session frames over the Session RPC (proto/twinserve/v1/model.proto): the daemon accepts
with its initial metadata (carrying the session's x-request-id), either side closes with a
`close` frame, and the client answers the daemon's close by ending its stream."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from clients._errors import TwinserveError
from clients._session import ABNORMAL, Closed
from twinserve_wire.proto.v1.model_pb2 import SessionClose, SessionFrame

Metadata = Sequence[tuple[str, str]]
# How long a close waits for the daemon to end the session after the client's close frame.
_CLOSE_TIMEOUT_S = 5.0
_ACCEPTED = "x-request-id"  # the daemon's initial metadata on accepting carries it
_END = object()  # ends the blocking client's stream of frames


def _message(frame: str | bytes) -> SessionFrame:
    return SessionFrame(text=frame) if isinstance(frame, str) else SessionFrame(data=frame)


def _close_message(code: int, reason: str) -> SessionFrame:
    return SessionFrame(close=SessionClose(code=code, reason=reason))


def _frame(message: SessionFrame) -> str | bytes | Closed:
    kind = message.WhichOneof("frame")
    if kind == "text":
        return message.text
    if kind == "data":
        return message.data
    if kind == "close":
        return Closed(message.close.code, message.close.reason)
    raise TwinserveError("INTERNAL", "the server sent an empty SessionFrame")


def _accepted(metadata: Any) -> str | None:
    """The session's request id, if the daemon accepted it."""
    return next((str(value) for key, value in metadata or () if key == _ACCEPTED), None)


def _refusal(code: grpc.StatusCode, details: str | None, trailing: Any) -> TwinserveError:
    request_id = next((value for key, value in trailing or () if key == _ACCEPTED), None)
    return TwinserveError(code.name, details or "", request_id)


def _not_accepted(timeout: float | None) -> TwinserveError:
    return TwinserveError("DEADLINE_EXCEEDED",
                          f"the server did not accept the session within {timeout:g}s")


class GrpcFrames:
    """Blocking (clients/_session.py Frames): frames to send go through a queue that
    grpc's sending thread reads."""

    def __init__(self, session: Any, metadata: Metadata, timeout: float | None) -> None:
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._call = session(iter(self._outbox.get, _END), metadata=metadata)
        self._server_close: Closed | None = None
        give_up = threading.Timer(timeout, self._call.cancel) if timeout is not None else None
        if give_up is not None:
            give_up.start()
        try:
            self.request_id = _accepted(self._call.initial_metadata())
        finally:
            if give_up is not None:
                give_up.cancel()
        if self.request_id is None:
            self._outbox.put(_END)
            code = self._call.code()
            if code is grpc.StatusCode.CANCELLED:
                raise _not_accepted(timeout)
            raise _refusal(code, self._call.details(), self._call.trailing_metadata())

    def send(self, frame: str | bytes) -> Closed | None:
        if self._call.done():
            return self._server_close or Closed(ABNORMAL, "")
        self._outbox.put(_message(frame))
        return None

    def receive(self) -> str | bytes | Closed:
        try:
            frame = _frame(next(self._call))
        except StopIteration:
            return self._server_close or Closed(ABNORMAL, "")
        except grpc.RpcError as exc:
            return Closed(ABNORMAL, exc.details() if isinstance(exc, grpc.Call) else "")
        if isinstance(frame, Closed):
            self._server_close = frame
            self._outbox.put(_END)  # the answer to the daemon's close
        return frame

    def close(self, code: int, reason: str) -> Closed:
        if self._server_close is None:
            self._outbox.put(_close_message(code, reason))
            self._outbox.put(_END)
        give_up = threading.Timer(_CLOSE_TIMEOUT_S, self._call.cancel)
        give_up.start()
        try:
            for message in self._call:  # what the daemon still sends, until it ends the call
                if message.WhichOneof("frame") == "close" and self._server_close is None:
                    self._server_close = Closed(message.close.code, message.close.reason)
        except grpc.RpcError:
            pass
        finally:
            give_up.cancel()
        return self._server_close or Closed(code, reason)

    def abort(self) -> None:
        self._call.cancel()
        self._outbox.put(_END)


class AsyncGrpcFrames:
    """asyncio (clients/_session.py AsyncFrames); `open()` starts the call."""

    def __init__(self, call: Any, request_id: str) -> None:
        self._call = call
        self.request_id: str | None = request_id
        self._server_close: Closed | None = None

    @classmethod
    async def open(cls, session: Any, metadata: Metadata,
                   timeout: float | None) -> AsyncGrpcFrames:
        call = session(metadata=metadata)
        try:
            async with asyncio.timeout(timeout):
                metadata_in = await call.initial_metadata()
        except TimeoutError:
            call.cancel()
            raise _not_accepted(timeout) from None
        request_id = _accepted(metadata_in)
        if request_id is None:
            raise _refusal(await call.code(), await call.details(),
                           await call.trailing_metadata())
        return cls(call, request_id)

    async def send(self, frame: str | bytes) -> Closed | None:
        try:
            await self._call.write(_message(frame))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return self._server_close or Closed(ABNORMAL, "")
        return None

    async def receive(self) -> str | bytes | Closed:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            return Closed(ABNORMAL, exc.details() or "")
        if message is grpc.aio.EOF:
            return self._server_close or Closed(ABNORMAL, "")
        frame = _frame(message)
        if isinstance(frame, Closed):
            self._server_close = frame
            await self._call.done_writing()  # the answer to the daemon's close
        return frame

    async def close(self, code: int, reason: str) -> Closed:
        try:
            if self._server_close is None:
                await self._call.write(_close_message(code, reason))
                await self._call.done_writing()
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                while (message := await self._call.read()) is not grpc.aio.EOF:
                    if message.WhichOneof("frame") == "close" and self._server_close is None:
                        self._server_close = Closed(message.close.code, message.close.reason)
        except TimeoutError:
            self._call.cancel()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the call is over already
        return self._server_close or Closed(code, reason)

    def abort(self) -> None:
        self._call.cancel()
