"""HTTP clients for a twinserve daemon (httpx), blocking and asyncio."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any

import httpx

from clients._api import ApiCalls, AsyncApiCalls
from clients._http_wire import (
    decoder_for,
    error_from_response,
    error_from_transport,
    is_json,
    needs_stream,
    path_for,
    raw_response,
)
from clients._options import DEFAULT_ROUTE, CallOptions, decode_json, encode_json
from clients._session import OpeningSession, Session
from clients._session_http import AsyncHttpFrames, HttpFrames
from clients._raw import (
    DEFAULT_CONTENT_TYPE,
    AsyncRawBody,
    RawBody,
    RawResponse,
    as_async,
)


def _client_kwargs(url: str, options: CallOptions) -> dict[str, Any]:
    return {
        "base_url": url.rstrip("/"),
        "timeout": httpx.Timeout(options.timeout),
        "headers": {"content-type": "application/json", **dict(options.header_items())},
    }


class HttpClient(ApiCalls):
    """Blocking client for a twinserve daemon's HTTP port (e.g. "http://host:8080").

    Args:
        timeout: seconds for each network step (connect, each read, ...); None for no limit.
        api_key: sent as `Authorization: Bearer <key>`.
        headers: more headers for every call.
    """

    def __init__(self, url: str, *, timeout: float | None = None, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._url = url
        self._options = CallOptions(timeout, api_key, dict(headers or {}))
        self._client = httpx.Client(**_client_kwargs(url, self._options))

    def predict(self, obj: Any, *, route: str = DEFAULT_ROUTE) -> Any:
        """Call `route` with `obj` as its JSON input; returns the decoded JSON result."""
        try:
            with self._client.stream("POST", path_for(route), content=encode_json(obj)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                if not is_json(response):
                    raise needs_stream(route, response)
                return decode_json(response.read())
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc

    def predict_stream(self, obj: Any, *,
                       route: str = DEFAULT_ROUTE) -> Generator[Any, None, None]:
        """Yield the route's chunks as they arrive (see StreamDecoder for what HTTP keeps);
        a /v1 route's server-sent events come out as their JSON payloads.

        Closing the generator early closes the connection, which cancels the model's work.
        """
        try:
            with self._client.stream("POST", path_for(route), content=encode_json(obj)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                decoder = decoder_for(response.headers.get("content-type", ""))
                try:
                    for piece in response.iter_raw():
                        yield from decoder.feed(piece)
                except httpx.RemoteProtocolError as exc:
                    raise decoder.broken() from exc
                yield from decoder.end()
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc

    def predict_raw(self, data: RawBody, *, content_type: str = DEFAULT_CONTENT_TYPE,
                    route: str = DEFAULT_ROUTE) -> RawResponse:
        """POST `data` as the body with its Content-Type; returns the answer's bytes and type.

        An iterable of bytes is sent as a chunked upload, piece by piece as it produces them.
        """
        content = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        try:
            response = self._client.post(path_for(route), content=content,
                                         headers={"content-type": content_type})
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc
        return raw_response(response)

    def websocket(self) -> Session:
        """Open a session with the model's `websocket` method (GET /v1/websocket); the
        client's timeout applies to opening it. TwinserveError if the server refuses."""
        return Session(HttpFrames(self._url, dict(self._options.header_items()),
                                  self._options.timeout))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHttpClient(AsyncApiCalls):
    """asyncio client for a twinserve daemon's HTTP port; options as for HttpClient."""

    def __init__(self, url: str, *, timeout: float | None = None, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._url = url
        self._options = CallOptions(timeout, api_key, dict(headers or {}))
        self._client = httpx.AsyncClient(**_client_kwargs(url, self._options))

    async def predict(self, obj: Any, *, route: str = DEFAULT_ROUTE) -> Any:
        """Call `route` with `obj` as its JSON input; returns the decoded JSON result."""
        try:
            async with self._client.stream("POST", path_for(route),
                                           content=encode_json(obj)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                if not is_json(response):
                    raise needs_stream(route, response)
                return decode_json(await response.aread())
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc

    async def predict_stream(self, obj: Any, *,
                             route: str = DEFAULT_ROUTE) -> AsyncGenerator[Any, None]:
        """Yield the route's chunks as they arrive; `aclose()` early cancels the call."""
        try:
            async with self._client.stream("POST", path_for(route),
                                           content=encode_json(obj)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                decoder = decoder_for(response.headers.get("content-type", ""))
                try:
                    async for piece in response.aiter_raw():
                        for chunk in decoder.feed(piece):
                            yield chunk
                except httpx.RemoteProtocolError as exc:
                    raise decoder.broken() from exc
                for chunk in decoder.end():
                    yield chunk
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc

    async def predict_raw(self, data: AsyncRawBody, *,
                          content_type: str = DEFAULT_CONTENT_TYPE,
                          route: str = DEFAULT_ROUTE) -> RawResponse:
        """As HttpClient.predict_raw; the pieces may also come from an async iterable."""
        content = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else \
            as_async(data)
        try:
            response = await self._client.post(path_for(route), content=content,
                                               headers={"content-type": content_type})
        except httpx.HTTPError as exc:
            raise error_from_transport(exc) from exc
        return raw_response(response)

    def websocket(self) -> OpeningSession:
        """As HttpClient.websocket: `async with client.websocket() as session:`, or await it."""
        return OpeningSession(lambda: AsyncHttpFrames.open(
            self._url, dict(self._options.header_items()), self._options.timeout))

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncHttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
