"""TwinserveError -> gRPC status, in one place for the gRPC front end.

Every failure leaves through `abort()` or `abort_internal()`, which end the call with
`await context.abort(...)` (typed NoReturn) and always carry the request id in the trailing
metadata `x-request-id`. Messages are the exception's message, the same text the HTTP
front end puts in its JSON body.

    ClientError(status)   nearest code to its HTTP status (twinserve_wire/codes.py):
                          400/422/other 4xx INVALID_ARGUMENT, 401 UNAUTHENTICATED,
                          403 PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS,
                          413 (PayloadTooLarge) and 429 RESOURCE_EXHAUSTED, 412 FAILED_PRECONDITION
    Overloaded            RESOURCE_EXHAUSTED, with trailing `retry-after` seconds
    NotReady              UNAVAILABLE
    DeadlineExceeded      DEADLINE_EXCEEDED
    ModelError            INTERNAL
    anything else         INTERNAL "internal server error" (traceback logged once)

    Refused               not a TwinserveError: a result this RPC cannot carry (a stream on a
                          unary RPC: FAILED_PRECONDITION; a raw `Response` with status >= 400:
                          the code for that status)
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc
import grpc.aio

from daemon.errors import (
    ClientError,
    DeadlineExceeded,
    ModelDefinitionError,
    ModelError,
    NotReady,
    Overloaded,
    TwinserveError,
)
from daemon.request import REQUEST_ID_HEADER
from twinserve_wire.codes import code_for_status

log = logging.getLogger("twinserve.grpc")

Context = grpc.aio.ServicerContext[Any, Any]

REQUEST_ID_KEY = REQUEST_ID_HEADER.lower()  # gRPC metadata keys are lower case

_CODE_BY_CLASS: tuple[tuple[type[TwinserveError], grpc.StatusCode], ...] = (
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ModelError, grpc.StatusCode.INTERNAL),
    (ModelDefinitionError, grpc.StatusCode.INTERNAL),
)


def code_for(err: TwinserveError) -> grpc.StatusCode:
    if isinstance(err, ClientError):
        return code_for_status(err.status)
    for cls, code in _CODE_BY_CLASS:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: Context, err: TwinserveError, request_id: str) -> NoReturn:
    metadata: tuple[tuple[str, str], ...] = ((REQUEST_ID_KEY, request_id),)
    if isinstance(err, Overloaded):
        metadata += (("retry-after", str(max(1, round(err.retry_after)))),)
    await context.abort(code_for(err), err.message, metadata)


async def abort_internal(context: Context, request_id: str) -> NoReturn:
    """The last resort: the traceback goes to the log once, the client gets a bare INTERNAL."""
    log.exception("unhandled error in request %s", request_id)
    await context.abort(grpc.StatusCode.INTERNAL, "internal server error",
                        ((REQUEST_ID_KEY, request_id),))


class Refused(Exception):
    """The result cannot leave on this RPC: the gRPC front end's own refusal, not a model error.

    E.g. a streamed result on a unary RPC, or a model `Response` with an error status on a raw
    call. Raised while turning a result into messages; `abort_refused` ends the call with it.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def abort_refused(context: Context, refused: Refused, request_id: str) -> NoReturn:
    await context.abort(refused.code, refused.message, ((REQUEST_ID_KEY, request_id),))
