"""The body of an HTTP request, read only when model code asks for it, and inflated here
when the client compressed it.

aiohttp's own decompression (off: see http/server.py) inflates each piece that arrives in
full before anything can count it, so a 1 MB gzip body became ~520 MiB before its 413.
Here a compressed body is inflated at most `_PIECE` bytes at a time, each piece counted
against runtime.max_request_bytes by the Request as it goes.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from aiohttp import hdrs, web

from daemon.errors import ClientError, InvalidInput

_PIECE = 1024 * 1024
# Content-Encoding -> zlib's wbits: gzip's header and trailer, or zlib's (HTTP "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class HttpBody:
    __slots__ = ("request",)

    def __init__(self, request: web.Request) -> None:
        self.request = request

    def received(self) -> bytes | None:
        content = self.request.content
        if content.is_eof() and hdrs.CONTENT_ENCODING not in self.request.headers:
            # All of it has arrived (a small body usually comes with the headers): take it
            # without aiohttp's read loop and copy.
            return content.read_nowait()
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        encoding = self.request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        if encoding == "identity":
            async for chunk in self.request.content.iter_any():
                yield chunk
            return
        wbits = _WBITS.get(encoding)
        if wbits is None:
            raise ClientError(f"Content-Encoding {encoding!r} is not supported; send gzip, "
                              "deflate or an uncompressed body", 415)
        inflater = zlib.decompressobj(wbits)
        try:
            async for compressed in self.request.content.iter_any():
                pending = compressed
                while pending:
                    piece = inflater.decompress(pending, _PIECE)
                    pending = inflater.unconsumed_tail
                    if piece:
                        yield piece
        except zlib.error as exc:
            raise InvalidInput(f"request body is not valid {encoding}: {exc}") from exc
        if not inflater.eof:
            raise InvalidInput(f"request body ends inside its {encoding} stream")

    def declared_length(self) -> int | None:
        # A compressed body's Content-Length says nothing of what it inflates to.
        if hdrs.CONTENT_ENCODING in self.request.headers:
            return None
        return self.request.content_length
