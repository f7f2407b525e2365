"""HTTP routes: translate aiohttp requests into `Request`s and pipeline results into responses."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon import codec
from daemon.errors import NotFound, NotReady, PayloadTooLarge
from daemon.http import formats
from daemon.http.errors import error_response
from daemon.http.keys import CONFIG, METRICS, PIPELINE, request_id_of, set_route
from daemon.http.streaming import write_chunks
from daemon.model.pipeline import ChunkStream
from daemon.request import Request, Response


class HttpBody:
    """The body of an aiohttp request, read only when model code asks for it."""

    __slots__ = ("_request",)

    def __init__(self, request: web.Request) -> None:
        self._request = request

    async def read(self, limit: int) -> bytes:
        declared = self._request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge(limit)
        try:
            return await self._request.read()  # the app's client_max_size is `limit`
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge(limit) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._request.content.iter_any():
            yield chunk

    def declared_length(self) -> int | None:
        return self._request.content_length


def to_request(request: web.Request, route: str, content_type: str | None = None) -> Request:
    return Request(
        transport="http",
        route=route,
        body=HttpBody(request),
        max_body_bytes=request.app[CONFIG].model.runtime.max_request_bytes,
        request_id=request_id_of(request),
        headers=request.headers,  # already case-insensitive
        query=request.query,
        path=request.path,
        content_type=content_type or request.headers.get("Content-Type") or "application/json",
    )


async def call_route(request: web.Request, route: str,
                     content_type: str | None = None) -> web.StreamResponse:
    set_route(request, route)
    twin = to_request(request, route, content_type)
    result = await request.app[PIPELINE].call(route, twin)
    if isinstance(result, ChunkStream):
        return await write_chunks(request, result, twin.request_id, formats.for_path(request.path))
    if isinstance(result, Response):
        headers = {**result.headers, "Content-Type": result.content_type,
                   "X-Request-Id": twin.request_id}
        return web.Response(body=result.body, status=result.status, headers=headers)
    return web.Response(body=codec.encode_result(route, result), content_type="application/json",
                        headers={"X-Request-Id": twin.request_id})


async def predict(request: web.Request) -> web.StreamResponse:
    return await call_route(request, "predict")


async def model_predict(request: web.Request) -> web.StreamResponse:
    _check_model_name(request)
    return await call_route(request, "predict")


async def model_predict_binary(request: web.Request) -> web.StreamResponse:
    """Truss's binary route: the body is msgpack whatever the Content-Type says."""
    _check_model_name(request)
    return await call_route(request, "predict", "application/octet-stream")


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    reason = await request.app[PIPELINE].not_ready_reason()
    if reason is not None:
        return error_response(NotReady(reason), request_id_of(request), formats.PREDICT)
    return web.json_response({"status": "ready"})


async def root(request: web.Request) -> web.Response:
    """Truss's liveness answer at `/`."""
    return web.json_response({})


async def model_info(request: web.Request) -> web.Response:
    """Truss's `GET /v1/models/{name}`: the model's name and whether it is ready."""
    name = _check_model_name(request)
    reason = await request.app[PIPELINE].not_ready_reason()
    return web.json_response({"name": name, "ready": reason is None})


def api_route(route: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler for one of the OpenAI/Anthropic-style routes, served by the model's method."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await call_route(request, route)

    handler.__name__ = route
    return handler


async def list_models(request: web.Request) -> web.Response:
    """OpenAI's `GET /v1/models`: the one model this daemon serves."""
    config = request.app[CONFIG]
    return web.json_response({"object": "list", "data": [
        {"id": config.model.model_name, "object": "model", "created": _STARTED,
         "owned_by": "twinserve"},
    ]})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus scrape endpoint (text format 0.0.4)."""
    return web.Response(body=request.app[METRICS].exposition(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _check_model_name(request: web.Request) -> str:
    name = request.match_info["name"]
    served = request.app[CONFIG].model.model_name
    if name != served:
        raise NotFound(f"no model named {name!r}; this daemon serves {served!r}")
    return name


API_ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
}
_STARTED = int(time.time())


def add_routes(app: web.Application) -> None:
    for path, route in API_ROUTES.items():
        app.router.add_post(path, api_route(route))
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/predict", predict)
    app.router.add_post("/v1/models/{name}:predict", model_predict)
    app.router.add_post("/v1/models/{name}:predict_binary", model_predict_binary)
    app.router.add_get("/v1/models/{name}", model_info)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", root)
