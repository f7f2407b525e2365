"""Write a ChunkStream as a chunked HTTP body, each chunk sent as soon as it is produced."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import hdrs, web

from daemon.errors import TwinserveError
from daemon.http.errors import error_payload
from daemon.http.formats import WireFormat
from daemon.http.headers import REQUEST_ID
from daemon.http.keepalive import KEEP_ALIVE
from daemon.model.streams import ChunkStream

log = logging.getLogger("twinserve.http")

_NOTHING = object()


def content_type_for(first_chunk: Any) -> str:
    if isinstance(first_chunk, str):
        return "text/plain; charset=utf-8"
    if isinstance(first_chunk, bytes):
        return "application/octet-stream"
    return "application/x-ndjson"


async def write_chunks(request: web.Request, stream: ChunkStream, request_id: str,
                       wire: WireFormat) -> web.StreamResponse:
    """Stream `stream` to the client.

    The first chunk is awaited before the headers go out, so an error raised before
    anything was produced still gets its proper status. An error after that is written as
    a final JSON error line and the body is cut off without its terminating chunk, so no
    client mistakes it for a complete 200.
    """
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        first = _NOTHING
    except BaseException:
        await stream.aclose()
        raise
    head = stream.head  # what a model's own StreamingResponse set
    if head is None:
        response = web.StreamResponse(headers={
            hdrs.CONTENT_TYPE: wire.stream_content_type or content_type_for(first),
            REQUEST_ID: request_id})
    else:
        response = web.StreamResponse(status=head.status, headers={
            **head.headers, hdrs.CONTENT_TYPE: head.content_type, REQUEST_ID: request_id})
    response.enable_chunked_encoding()
    request.app[KEEP_ALIVE].settle(response)  # during the drain: Connection: close
    encode = wire.encode_chunk
    last = first
    try:
        await response.prepare(request)
        if first is not _NOTHING:
            await response.write(encode(first))
            async for last in stream:
                await response.write(encode(last))
        if wire.stream_end and not isinstance(last, (str, bytes)):
            await response.write(wire.stream_end)  # we framed the events, so we end them too
    except TwinserveError as err:
        log.warning("stream %s failed after it started: %s", request_id, err.message)
        await _end_with_error(request, response, encode(error_payload(err, request_id, wire)))
        return response
    except ConnectionResetError:
        return response  # the client left; stream.aclose() below tells the model
    except Exception:
        # Not ours to describe (a bug, or an encoder failing): logged here, once, and the
        # client gets no internals. Answering through the error boundary instead would write
        # a whole second response into the chunked body.
        log.exception("stream %s failed after it started", request_id)
        await _end_with_error(request, response, encode(
            wire.error_payload("internal_error", "internal server error", 500, request_id,
                               None)))
        return response
    finally:
        await stream.aclose()
    await response.write_eof()
    return response


async def gather_chunks(stream: ChunkStream) -> str:
    """A stream as one text, for a client that asked for `Accept: application/json` (Truss
    answers such a call to a streaming predict this way): bytes joined, then decoded once,
    so a character split across chunks stays whole; other chunks as their str()."""
    try:
        pieces = [chunk if isinstance(chunk, bytes) else str(chunk).encode()
                  async for chunk in stream]
    finally:
        await stream.aclose()
    return b"".join(pieces).decode(errors="replace")


async def _end_with_error(request: web.Request, response: web.StreamResponse,
                          error: bytes) -> None:
    """Write the error event, then close the connection after flushing it, leaving the
    chunked body unterminated: no client reads that as a complete answer."""
    try:
        await response.write(error)
    except ConnectionResetError:
        pass
    transport = request.transport
    if transport is not None:
        transport.close()
