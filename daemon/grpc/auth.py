"""The API-key check on gRPC, made when a call arrives: before any of its messages is read.

A check inside the handlers would come too late: grpc.aio receives and decodes a unary
call's whole message (up to runtime.max_request_bytes) before the handler runs, so an
unauthenticated client could make the daemon buffer and parse 64 MiB at will. An
interceptor sees only the method and the metadata; a refused call gets a handler that reads
no message (it is request-streaming, so grpc.aio does not read one for it) and answers
UNAUTHENTICATED. Installed only when an API key is configured, so calls without one pay
nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import grpc.aio
from grpc_health.v1 import health

from daemon.auth import AuthCheck
from daemon.errors import Unauthenticated
from daemon.grpc.errors import REQUEST_ID_KEY
from daemon.grpc.messages import metadata_headers
from daemon.observe import UNMATCHED, CallObserver
from daemon.request import new_request_id

# Probes need no key, as on HTTP (/health/*); everything else does, reflection included:
# a deployment that sets a key has not chosen to publish its schema.
_OPEN_PREFIXES = (f"/{health.SERVICE_NAME}/",)

# grpc's handler types are generic in its stubs only: a string, not evaluated at run time.
Continuation: TypeAlias = ("Callable[[grpc.HandlerCallDetails], "
                           "Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]")


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, auth: AuthCheck, observer: CallObserver) -> None:
        self._auth = auth
        self._observer = observer

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails
                                ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if details.method.startswith(_OPEN_PREFIXES):
            return await continuation(details)
        headers = metadata_headers(details.invocation_metadata)
        try:
            self._auth(headers)
        except Unauthenticated as refusal:
            return self._refusal(refusal, headers.get(REQUEST_ID_KEY) or new_request_id())
        return await continuation(details)

    def _refusal(self, refusal: Unauthenticated,
                 request_id: str) -> grpc.RpcMethodHandler[Any, Any]:
        started = time.perf_counter()

        async def refuse(messages: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            self._observer.finished("grpc", UNMATCHED, grpc.StatusCode.UNAUTHENTICATED.name,
                                    started, request_id)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal.message,
                                ((REQUEST_ID_KEY, request_id),))

        return grpc.stream_unary_rpc_method_handler(refuse)
