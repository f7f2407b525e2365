"""A model's method bound once at load, with how to call it decided then: which arguments
it takes, and whether it runs on the loop or in the thread pool."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from daemon.model.grace import call_with_grace
from daemon.model.signature import ArgShape, MethodSpec
from daemon.model.typed_io import InputModel
from daemon.request import Request

T = TypeVar("T")


Start = Callable[[Any, Request], Awaitable[Any]]
"""(input, request) -> an awaitable of the method's result; an async generator method's
result is the generator."""


class BoundMethod:
    """One of the model's methods, bound, with how to call it decided once: which arguments
    it takes, and whether it runs on the loop or in the pool. `pre` and `post` are
    predict's hooks."""

    __slots__ = ("name", "parses_body", "takes_request", "start", "pre", "post", "input_model")

    def __init__(self, spec: MethodSpec, fn: Callable[..., Any],
                 run_sync: Callable[..., Awaitable[Any]], cancel_grace_s: float = 0.0) -> None:
        self.name = spec.name
        # Whether the pipeline parses the call's body for it: not when what runs first (this
        # method, or predict's preprocess) takes only the request and reads the body itself.
        self.parses_body = spec.shape is not ArgShape.REQUEST
        self.takes_request = spec.takes_request
        self.start = _starter(spec, fn, run_sync)
        if spec.takes_request and cancel_grace_s:
            # It can watch its request: a client's leaving lets it end itself (grace.py).
            self.start = call_with_grace(self.start, spec.name, cancel_grace_s)
        self.pre: BoundMethod | None = None
        self.post: BoundMethod | None = None
        self.input_model: InputModel | None = None  # predict's typed input (typed_io.py)


def _starter(spec: MethodSpec, fn: Callable[..., Any],
             run_sync: Callable[..., Awaitable[Any]]) -> Start:
    """Decided here, once, rather than on every call: a coroutine method's own coroutine is
    what the call awaits, with no wrapper of ours between."""
    call: Callable[..., Awaitable[Any]]
    if spec.is_async_generator:
        def call(*args: Any) -> Awaitable[Any]:
            return _ready(fn(*args))
    elif spec.is_coroutine:
        call = fn
    else:
        call = functools.partial(run_sync, fn)  # sync code never runs on the loop
    if spec.shape is ArgShape.INPUT:
        return lambda inputs, request: call(inputs)
    if spec.shape is ArgShape.REQUEST:
        return lambda inputs, request: call(request)
    return call


async def _ready(value: T) -> T:
    return value
