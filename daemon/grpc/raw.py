"""The raw-bytes RPCs (Invoke, InvokeStream, Upload): bodies in, pipeline results out.

An Upload's body is a `BodySource` that pulls each message off the call as model code asks
for the next chunk, so a large upload flows through the model instead of piling up in the
daemon: HTTP/2 flow control holds the client back while the model is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from daemon import codec
from daemon.errors import InvalidInput
from daemon.grpc.errors import Refused
from daemon.grpc.messages import Malformed
from daemon.model.streams import ChunkStream
from daemon.request import Response
from twinserve_wire.codes import code_for_status
from twinserve_wire.proto.v1.model_pb2 import InvokeResponse, UploadRequest

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# How long a stream that ended without `last` waits for the cancellation that usually
# explains it (it comes within a loop iteration or two) before calling the upload broken.
_CANCEL_GRACE_S = 0.1


class UploadBody:
    """The body of an Upload call: the first message's data, then each later message's,
    up to the one marked `last`."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: UploadRequest,
                 rest: AsyncIterator[UploadRequest | Malformed]) -> None:
        self._first: UploadRequest | None = first
        self._rest = rest

    def received(self) -> None:
        return None  # the messages after the first are pulled off the call as they are read

    async def chunks(self) -> AsyncIterator[bytes]:
        message: UploadRequest | Malformed | None
        message, self._first = self._first, None
        while message is not None:
            if message.data:
                yield message.data
            if message.last:
                return
            message = await anext(self._rest, None)
            if isinstance(message, Malformed):
                raise message.error()
        # grpc.aio ends the iterator the same way for a client's cancel as for its
        # half-close; the cancel reaches this task right after. Never pass a broken-off
        # upload to the model as a complete short body.
        await asyncio.sleep(_CANCEL_GRACE_S)
        raise InvalidInput("the upload ended without a message with last=true (the client "
                           "went away, or did not mark its final message)")

    def declared_length(self) -> int | None:
        return None


def response_for(route: str, result: Any) -> InvokeResponse:
    """A unary result as one InvokeResponse; Refused when it cannot be one."""
    if isinstance(result, ChunkStream):
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                      f"{route} streams its output; call InvokeStream instead of Invoke")
    if isinstance(result, Response):
        if result.status >= 400:
            raise Refused(code_for_status(result.status), _error_message(result))
        return InvokeResponse(content_type=result.content_type, data=result.body)
    return InvokeResponse(content_type=JSON, data=codec.encode_result(route, result))


def chunk_response(route: str, chunk: Any) -> InvokeResponse:
    """One streamed chunk, labelled with what it is: bytes, text, or a JSON value."""
    if isinstance(chunk, bytes):
        return InvokeResponse(content_type=DEFAULT_CONTENT_TYPE, data=chunk)
    if isinstance(chunk, str):
        return InvokeResponse(content_type=TEXT, data=chunk.encode())
    return InvokeResponse(content_type=JSON, data=codec.json_chunk(route, chunk))


def _error_message(response: Response) -> str:
    """The body when it reads as text (so the client sees the model's words), else the status."""
    media = response.content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media in (JSON, "application/problem+json"):
        text = response.body.decode("utf-8", errors="replace").strip()
        if text:
            return text
    return f"the model answered with status {response.status}"
