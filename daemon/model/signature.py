"""Check a Model class's methods against the contract, once, at load time.

Rules (Truss's, so Truss models run unchanged):
- a method takes the input, the request, or the input then the request; nothing else;
- a parameter is "the request" when annotated with `daemon.Request`, or with
  `fastapi.Request` / `starlette.requests.Request` (recognised by name, never imported);
- `predict` may not take only the request when `preprocess` exists, nor may
  `postprocess`; a `preprocess` that takes only the request reads the body itself;
- a model serves sessions with `async def websocket(self, websocket)` (daemon/websocket.py)
  instead of predict: it may not define predict, preprocess or postprocess besides.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable
from typing import Any

from daemon.errors import ModelDefinitionError
from daemon.request import Request

_REQUEST_TYPE_NAMES = frozenset(
    {
        "daemon.request.Request",
        "starlette.requests.Request",
        "fastapi.Request",
        "fastapi.requests.Request",
    }
)
# Spellings a string annotation may use when it cannot be resolved.
_REQUEST_ANNOTATION_STRINGS = _REQUEST_TYPE_NAMES | {
    "Request", "daemon.Request", "requests.Request", "starlette.requests.Request",
}

# Route name -> the Model method that serves it. predict is required; the rest optional.
PIPELINE_HOOKS = ("preprocess", "predict", "postprocess")
ENDPOINT_METHODS = ("predict", "chat_completions", "completions", "embeddings", "messages",
                    "responses")
SESSION_METHOD = "websocket"


class ArgShape(enum.Enum):
    INPUT = "input"
    REQUEST = "request"
    INPUT_AND_REQUEST = "input, request"


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    shape: ArgShape
    is_coroutine: bool
    is_async_generator: bool
    signature: str
    # The input parameter's and the return annotations, resolved where they can be (typed
    # inputs and outputs, daemon/model/typed_io.py); None when absent.
    input_annotation: Any = None
    return_annotation: Any = None

    @property
    def takes_request(self) -> bool:
        return self.shape is not ArgShape.INPUT


def check_model_class(cls: type) -> dict[str, MethodSpec]:
    """Describe every contract method `cls` defines, raising ModelDefinitionError on a breach."""
    specs = {
        name: describe(cls, name)
        for name in (*PIPELINE_HOOKS, *ENDPOINT_METHODS, SESSION_METHOD)
        if callable(getattr(cls, name, None))
    }
    if SESSION_METHOD in specs:
        _check_session_method(cls, specs)
        return specs
    if "predict" not in specs:
        raise ModelDefinitionError(
            f"{cls.__name__} must define a predict method (or a websocket method, to serve "
            "sessions)")
    post = specs.get("postprocess")
    if post is not None and post.shape is ArgShape.REQUEST:
        raise ModelDefinitionError(
            f"postprocess{post.signature}: postprocess must take predict's result (and "
            "optionally the request), not only the request: the result would be discarded"
        )
    is_healthy = getattr(cls, "is_healthy", None)
    if callable(is_healthy) and _parameters(cls, "is_healthy", is_healthy)[1]:
        raise ModelDefinitionError(
            f"is_healthy{inspect.signature(is_healthy)}: `is_healthy` must have only one "
            "argument: `self`"
        )
    predict = specs["predict"]
    if "preprocess" in specs and predict.shape is ArgShape.REQUEST:
        raise ModelDefinitionError(
            f"predict{predict.signature}: a predict that takes only the request gets the raw "
            "request, so it cannot be combined with preprocess; take the input as well, or "
            "remove preprocess"
        )
    return specs


def _check_session_method(cls: type, specs: dict[str, MethodSpec]) -> None:
    """Truss's rules for `websocket`: async, the session its only argument, and no predict
    hooks beside it (they would never run)."""
    websocket = specs[SESSION_METHOD]
    hooks = [name for name in PIPELINE_HOOKS if name in specs]
    if hooks:
        raise ModelDefinitionError(
            f"{cls.__name__} cannot have both `websocket` and any of `predict`, `preprocess`, "
            f"`postprocess` (it defines {', '.join(hooks)}): a model serves sessions or calls")
    if websocket.shape is not ArgShape.INPUT:
        raise ModelDefinitionError(
            f"websocket{websocket.signature}: `websocket` must have only one argument: "
            "`websocket`")
    if not websocket.is_coroutine:
        raise ModelDefinitionError(
            f"websocket{websocket.signature}: `websocket` endpoints must be async function "
            "definitions (async def, not a generator)")


def describe(cls: type, name: str) -> MethodSpec:
    fn = getattr(cls, name)
    sig, params = _parameters(cls, name, fn)
    shown = f"{sig}"
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
            raise ModelDefinitionError(
                f"{name}{shown}: parameters must be positional (the input, then optionally the "
                f"request); {p.name!r} is not"
            )
    is_request = [_is_request_annotation(p.annotation, fn) for p in params]
    if len(params) == 0:
        raise ModelDefinitionError(
            f"{name}{shown}: must take the input, the request, or both (input first)"
        )
    if len(params) > 2:
        raise ModelDefinitionError(
            f"{name}{shown}: takes {len(params)} arguments; at most 2 are allowed "
            "(the input, then the request)"
        )
    if len(params) == 1:
        shape = ArgShape.REQUEST if is_request[0] else ArgShape.INPUT
    else:
        if not is_request[1]:
            raise ModelDefinitionError(
                f"{name}{shown}: with two arguments the second must be the request, annotated "
                "as daemon.Request (or fastapi.Request)"
            )
        if is_request[0]:
            raise ModelDefinitionError(f"{name}{shown}: the request may be passed only once")
        shape = ArgShape.INPUT_AND_REQUEST
    return MethodSpec(
        name=name,
        shape=shape,
        is_coroutine=inspect.iscoroutinefunction(fn),
        is_async_generator=inspect.isasyncgenfunction(fn),
        signature=shown,
        input_annotation=None if shape is ArgShape.REQUEST else _annotation(params[0].annotation,
                                                                            fn),
        return_annotation=_annotation(sig.return_annotation, fn),
    )


def _annotation(annotation: Any, fn: Callable[..., Any]) -> Any:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return _resolve(annotation.strip("'\" "), fn)
    return annotation


def _parameters(cls: type, name: str,
                fn: Callable[..., Any]) -> tuple[inspect.Signature, list[inspect.Parameter]]:
    """The method's signature, and its parameters after `self`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ModelDefinitionError(f"{name}: cannot inspect its signature: {exc}") from exc
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls") and not isinstance(
        inspect.getattr_static(cls, name), staticmethod
    ):
        params = params[1:]
    return sig, params


def _is_request_annotation(annotation: Any, fn: Callable[..., Any]) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if annotation is Request:
        return True
    if isinstance(annotation, str):
        annotation = annotation.strip("'\" ")  # a quoted annotation under postponed evaluation
        resolved = _resolve(annotation, fn)
        if resolved is None:
            return annotation in _REQUEST_ANNOTATION_STRINGS
        annotation = resolved
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}" in _REQUEST_TYPE_NAMES
    return False


def _resolve(annotation: str, fn: Callable[..., Any]) -> Any:
    """Evaluate a postponed annotation in the function's module, or None if it cannot be."""
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    try:
        return eval(annotation, dict(namespace))  # noqa: S307 - the model's own annotation
    except Exception:
        return None
