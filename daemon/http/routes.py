"""HTTP routes: translate aiohttp requests into `Request`s and pipeline results into responses."""

from __future__ import annotations

import time

from aiohttp import hdrs, web

from daemon import codec
from daemon.config import Config
from daemon.errors import NotFound, NotReady
from daemon.http import formats
from daemon.http.body import HttpBody
from daemon.http.boundary import Boundary, Handler
from daemon.http import session
from daemon.http.headers import REQUEST_ID
from daemon.http.request import HttpRequest
from daemon.http.streaming import gather_chunks, write_chunks
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.model.streams import ChunkStream
from daemon.observe import UNMATCHED
from daemon.request import Response

API_ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
}
JSON = "application/json"
_STARTED = int(time.time())


def _wants_one_answer(request: web.Request) -> bool:
    """Truss's rule: `Accept: application/json` asks for a streaming predict's output as one
    JSON string, except from the OpenAI SDK, which sends that header on its streams too."""
    return request.headers.get(hdrs.ACCEPT) == JSON and \
        "openai" not in request.headers.get(hdrs.USER_AGENT, "").lower()


class Routes:
    """The daemon's HTTP routes, bound to one pipeline."""

    def __init__(self, pipeline: ModelPipeline, config: Config, metrics: Metrics) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._model_name = config.model.model_name
        self._runtime = config.model.runtime
        self._body_limits = pipeline.body_limits
        self._router: web.UrlDispatcher | None = None
        self._fallback: web.AbstractResource | None = None

    def add_to(self, router: web.UrlDispatcher, boundary: Boundary) -> None:
        def model_route(path: str, route: str, content_type: str | None = None) -> None:
            wire = formats.for_path(path)
            handler = self._model_handler(route, wire, content_type)
            router.add_post(path, boundary.wrap(handler, route, wire),
                            expect_handler=boundary.expect(route, wire, self._body_limits))

        def plain(path: str, handler: Handler, open_: bool = False) -> None:
            router.add_get(path, boundary.wrap(handler, path, formats.for_path(path), open_))

        model_route("/predict", "predict")
        # Truss's routes. Like Truss, they take any name: clients call /v1/models/model:predict.
        model_route("/v1/models/{name}:predict", "predict")
        # Truss's binary route: the body is msgpack whatever the Content-Type says.
        model_route("/v1/models/{name}:predict_binary", "predict", "application/octet-stream")
        model_route("/invocations", "predict")  # SageMaker's pair, with /ping
        for path, route in API_ROUTES.items():
            model_route(path, route)
        router.add_get(session.PATH, boundary.wrap(
            session.session_handler(self._pipeline, self._runtime.transport,
                                    self._runtime.max_frame_bytes),
            session.ROUTE, formats.for_path(session.PATH)))
        plain("/v1/models", self.list_models)
        plain("/v1/models/{name}", self.model_info)
        plain("/v1/models/{name}/loaded", self.loaded)
        plain("/v1/models/{name}/schema", self.schema)
        plain("/ping", self.ping, open_=True)
        plain("/health/live", self.live, open_=True)
        plain("/health/ready", self.ready, open_=True)
        plain("/metrics", self.metrics, open_=True)
        plain("/", self.root, open_=True)
        # Last, so it only sees what no route above took: JSON 404s and 405s.
        self._router = router
        self._fallback = router.add_route(
            "*", "/{path:.*}", boundary.wrap(self.unmatched, UNMATCHED, None)).resource

    def _model_handler(self, route: str, wire: formats.WireFormat,
                       content_type: str | None) -> Handler:
        """The handler of a model route: `route` names the model's method, `wire` frames its
        stream; `content_type` overrides the request's."""
        call = self._pipeline.call
        limits = self._body_limits
        gather = route == "predict"

        async def handler(request: web.Request, request_id: str) -> web.StreamResponse:
            twin = HttpRequest(  # aiohttp's headers are case-insensitive already
                transport="http", route=route, request_id=request_id, body=HttpBody(request),
                limits=limits, headers=request.headers,
                content_type=content_type or request.headers.get(hdrs.CONTENT_TYPE) or JSON)
            result = await call(route, twin)
            if isinstance(result, ChunkStream):
                if gather and _wants_one_answer(request):
                    result = await gather_chunks(result)
                else:
                    return await write_chunks(request, result, request_id, wire)
            if isinstance(result, Response):
                headers = {**result.headers, hdrs.CONTENT_TYPE: result.content_type,
                           REQUEST_ID: request_id}
                return web.Response(body=result.body, status=result.status, headers=headers)
            response = web.Response(body=codec.encode_result(route, result), content_type=JSON)
            response.headers[REQUEST_ID] = request_id
            return response

        handler.__name__ = route
        return handler

    # -- everything else --------------------------------------------------------------------

    async def live(self, request: web.Request, request_id: str) -> web.Response:
        return web.json_response({"status": "alive"})

    async def ready(self, request: web.Request, request_id: str) -> web.Response:
        await self._check_ready()
        return web.json_response({"status": "ready"})

    async def root(self, request: web.Request, request_id: str) -> web.Response:
        """Truss's liveness answer at `/`."""
        return web.json_response(True)

    async def model_info(self, request: web.Request, request_id: str) -> web.Response:
        """Truss's readiness probe, `GET /v1/models/{name}` (any name, as in Truss): 200 with
        the model's name once it is ready and healthy, else 503."""
        await self._check_ready()
        return web.json_response({"name": self._model_name, "ready": True})

    async def loaded(self, request: web.Request, request_id: str) -> web.Response:
        """Truss's `GET /v1/models/{name}/loaded`: 200 once loaded, whatever is_healthy says."""
        if not self._pipeline.loaded:
            raise NotReady(f"model {self._model_name!r} is not loaded")
        return web.json_response({})

    async def schema(self, request: web.Request, request_id: str) -> web.Response:
        """Truss's `GET /v1/models/{name}/schema`: the pydantic input and output schemas."""
        if not self._pipeline.loaded:
            raise NotReady("Schema not available, please try again later.")
        schema = self._pipeline.schema
        if schema is None:
            raise NotFound("No schema found")
        return web.json_response(schema.serialize())

    async def ping(self, request: web.Request, request_id: str) -> web.Response:
        """SageMaker's readiness probe."""
        await self._check_ready()
        return web.json_response({})

    async def _check_ready(self) -> None:
        reason = await self._pipeline.not_ready_reason()
        if reason is not None:
            raise NotReady(reason)

    async def list_models(self, request: web.Request, request_id: str) -> web.Response:
        """OpenAI's `GET /v1/models`: the one model this daemon serves."""
        return web.json_response({"object": "list", "data": [
            {"id": self._model_name, "object": "model", "created": _STARTED,
             "owned_by": "twinserve"},
        ]})

    async def metrics(self, request: web.Request, request_id: str) -> web.Response:
        """Prometheus scrape endpoint (text format 0.0.4)."""
        return web.Response(body=self._metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def unmatched(self, request: web.Request, request_id: str) -> web.Response:
        """No route took the request: 405 naming the methods if some route has its path,
        else 404."""
        assert self._router is not None
        allowed: set[str] = set()
        for resource in self._router.resources():
            if resource is not self._fallback:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()
