"""Typed keys for what the HTTP app and its requests carry."""

from __future__ import annotations

from aiohttp import web

from daemon.config import Config
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline

PIPELINE = web.AppKey("pipeline", ModelPipeline)
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
_REQUEST_ID = "twinserve.request_id"


def set_request_id(request: web.Request, request_id: str) -> None:
    request[_REQUEST_ID] = request_id


def request_id_of(request: web.Request) -> str:
    return request[_REQUEST_ID]  # type: ignore[no-any-return]
