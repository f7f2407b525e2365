"""A model's method bound once at load, with how to call it decided then: which arguments
it takes, and whether it runs on the loop or in the thread pool."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from daemon.model.signature import ArgShape, MethodSpec
from daemon.request import Request

T = TypeVar("T")


Start = Callable[[Any, Request], Awaitable[Any]]
"""(input, request) -> an awaitable of the method's result; an async generator method's
result is the generator."""


class BoundMethod:
    """One of the model's methods, bound, with how to call it decided once: which arguments
    it takes, and whether it runs on the loop or in the pool. `pre` and `post` are
    predict's hooks."""

    __slots__ = ("name", "reads_body", "start", "pre", "post")

    def __init__(self, spec: MethodSpec, fn: Callable[..., Any],
                 run_sync: Callable[..., Awaitable[Any]]) -> None:
        self.name = spec.name
        self.reads_body = spec.shape is not ArgShape.REQUEST
        self.start = _starter(spec, fn, run_sync)
        self.pre: BoundMethod | None = None
        self.post: BoundMethod | None = None


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
