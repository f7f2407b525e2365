"""The raw-bytes call's answer and body, whatever the transport."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable

DEFAULT_CONTENT_TYPE = "application/octet-stream"

RawBody = bytes | Iterable[bytes]
"""A whole body, or its pieces: an iterable goes out as a chunked HTTP upload or a
client-streaming gRPC call, one piece at a time."""

AsyncRawBody = bytes | Iterable[bytes] | AsyncIterable[bytes]


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """What a raw call answered: the body as sent and its content type."""

    data: bytes
    content_type: str


async def as_async(pieces: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Sync iterables too, for asyncio transports that only take async ones (httpx)."""
    if isinstance(pieces, AsyncIterable):
        async for piece in pieces:
            yield piece
    else:
        for piece in pieces:
            yield piece
