"""Typed keys for what the HTTP app and its requests carry."""

from __future__ import annotations

from aiohttp import web

from daemon.auth import AuthCheck
from daemon.config import Config
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver

PIPELINE = web.AppKey("pipeline", ModelPipeline)
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
OBSERVER = web.AppKey("observer", CallObserver)
AUTH: web.AppKey[AuthCheck] = web.AppKey("auth")
_REQUEST_ID = "twinserve.request_id"
_ROUTE = "twinserve.route"


def set_request_id(request: web.Request, request_id: str) -> None:
    request[_REQUEST_ID] = request_id


def request_id_of(request: web.Request) -> str:
    return request[_REQUEST_ID]  # type: ignore[no-any-return]


def set_route(request: web.Request, route: str) -> None:
    request[_ROUTE] = route


def route_label(request: web.Request) -> str:
    """The model route ("predict", "chat_completions"...) or else the matched path pattern:
    a label with few values, whatever paths clients invent."""
    route = request.get(_ROUTE)
    if isinstance(route, str):
        return route
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
