"""HTTP routes: translate aiohttp requests into `Request`s and pipeline results into responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from daemon import codec
from daemon.errors import NotFound, NotReady
from daemon.http.errors import error_response
from daemon.http.keys import CONFIG, PIPELINE, request_id_of
from daemon.http.streaming import write_chunks
from daemon.model.pipeline import ChunkStream
from daemon.request import Headers, Request


class HttpBody:
    """The body of an aiohttp request, read only when model code asks for it."""

    __slots__ = ("_request",)

    def __init__(self, request: web.Request) -> None:
        self._request = request

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._request.content.iter_any():
            yield chunk

    def declared_length(self) -> int | None:
        return self._request.content_length


def to_request(request: web.Request, route: str) -> Request:
    return Request(
        transport="http",
        route=route,
        body=HttpBody(request),
        max_body_bytes=request.app[CONFIG].model.runtime.max_request_bytes,
        request_id=request_id_of(request),
        headers=Headers(request.headers),
        query=request.query,
        path=request.path,
    )


async def call_route(request: web.Request, route: str) -> web.StreamResponse:
    twin = to_request(request, route)
    result = await request.app[PIPELINE].call(route, twin)
    if isinstance(result, ChunkStream):
        return await write_chunks(request, result, twin.request_id)
    return web.Response(body=codec.encode_result(route, result), content_type="application/json",
                        headers={"X-Request-Id": twin.request_id})


async def predict(request: web.Request) -> web.StreamResponse:
    return await call_route(request, "predict")


async def model_predict(request: web.Request) -> web.StreamResponse:
    _check_model_name(request)
    return await call_route(request, "predict")


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    reason = await request.app[PIPELINE].not_ready_reason()
    if reason is not None:
        return error_response(NotReady(reason), request_id_of(request))
    return web.json_response({"status": "ready"})


async def root(request: web.Request) -> web.Response:
    """Truss's liveness answer at `/`."""
    return web.json_response({})


async def model_info(request: web.Request) -> web.Response:
    """Truss's `GET /v1/models/{name}`: the model's name and whether it is ready."""
    name = _check_model_name(request)
    reason = await request.app[PIPELINE].not_ready_reason()
    return web.json_response({"name": name, "ready": reason is None})


def _check_model_name(request: web.Request) -> str:
    name = request.match_info["name"]
    served = request.app[CONFIG].model.model_name
    if name != served:
        raise NotFound(f"no model named {name!r}; this daemon serves {served!r}")
    return name


def add_routes(app: web.Application) -> None:
    app.router.add_post("/predict", predict)
    app.router.add_post("/v1/models/{name}:predict", model_predict)
    app.router.add_get("/v1/models/{name}", model_info)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/", root)
