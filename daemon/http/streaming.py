"""Write a ChunkStream as a chunked HTTP body, each chunk sent as soon as it is produced."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from daemon import codec
from daemon.errors import TwinserveError
from daemon.http.errors import error_body
from daemon.model.pipeline import ChunkStream

log = logging.getLogger("twinserve.http")

_NOTHING = object()


def content_type_for(first_chunk: Any) -> str:
    if isinstance(first_chunk, str):
        return "text/plain; charset=utf-8"
    if isinstance(first_chunk, bytes):
        return "application/octet-stream"
    return "application/x-ndjson"


async def write_chunks(request: web.Request, stream: ChunkStream, request_id: str) -> web.StreamResponse:
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
    response = web.StreamResponse(
        headers={"Content-Type": content_type_for(first), "X-Request-Id": request_id}
    )
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        if first is not _NOTHING:
            await response.write(codec.encode_chunk(first))
            async for chunk in stream:
                await response.write(codec.encode_chunk(chunk))
    except TwinserveError as err:
        log.warning("stream %s failed after it started: %s", request_id, err.message)
        try:
            await response.write(error_body(err.kind, err.message, request_id) + b"\n")
        except ConnectionResetError:
            pass
        _abort_body(request)
        return response
    except ConnectionResetError:
        return response  # the client left; stream.aclose() below tells the model
    finally:
        await stream.aclose()
    await response.write_eof()
    return response


def _abort_body(request: web.Request) -> None:
    """Close the connection after flushing, leaving the chunked body unterminated."""
    transport = request.transport
    if transport is not None:
        transport.close()
