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
    __slots__ = ("_request", "_encoding")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._encoding: str | None = None  # looked up on first use

    def received(self) -> bytes | None:
        content = self._request.content
        if content.is_eof() and not self._encoded():
            # All of it has arrived (a small body usually comes with the headers): take it
            # without aiohttp's read loop and copy.
            return content.read_nowait()
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        if not self._encoded():
            async for chunk in self._request.content.iter_any():
                yield chunk
            return
        wbits = _WBITS.get(self._encoding or "")
        if wbits is None:
            raise ClientError(f"Content-Encoding {self._encoding!r} is not supported; send "
                              "gzip, deflate or an uncompressed body", 415)
        inflater = zlib.decompressobj(wbits)
        try:
            async for compressed in self._request.content.iter_any():
                pending = compressed
                while pending:
                    piece = inflater.decompress(pending, _PIECE)
                    pending = inflater.unconsumed_tail
                    if piece:
                        yield piece
        except zlib.error as exc:
            raise InvalidInput(f"request body is not valid {self._encoding}: {exc}") from exc
        if not inflater.eof:
            raise InvalidInput(f"request body ends inside its {self._encoding} stream")

    def declared_length(self) -> int | None:
        # A compressed body's Content-Length says nothing of what it inflates to.
        return None if self._encoded() else self._request.content_length

    def _encoded(self) -> bool:
        if self._encoding is None:
            self._encoding = self._request.headers.get(hdrs.CONTENT_ENCODING, "identity")\
                .strip().lower()
        return self._encoding != "identity"
