"""The method-signature rules, checked in-process on small classes."""

from __future__ import annotations

from typing import Any

import pytest

from daemon import Request
from daemon.errors import ModelDefinitionError
from daemon.model.signature import ArgShape, check_model_class


def shapes(cls: type) -> dict[str, ArgShape]:
    return {name: spec.shape for name, spec in check_model_class(cls).items()}


def test_shapes_by_annotation() -> None:
    class M:
        def preprocess(self, x: Any) -> Any: ...
        async def predict(self, x: Any, request: Request) -> Any: ...
        def postprocess(self, y: Any, request: Request) -> Any: ...
        def chat_completions(self, request: Request) -> Any: ...

    assert shapes(M) == {"preprocess": ArgShape.INPUT, "predict": ArgShape.INPUT_AND_REQUEST,
                         "postprocess": ArgShape.INPUT_AND_REQUEST,
                         "chat_completions": ArgShape.REQUEST}


def test_fastapi_and_starlette_annotations_by_name() -> None:
    class M:
        def predict(self, x: Any,
                    request: "fastapi.Request") -> Any: ...  # type: ignore[name-defined]  # noqa: F821,E501
        def completions(self,
                        request: "starlette.requests.Request") -> Any: ...  # type: ignore[name-defined]  # noqa: F821,E501

    assert shapes(M) == {"predict": ArgShape.INPUT_AND_REQUEST, "completions": ArgShape.REQUEST}


def test_a_websocket_method_serves_without_predict() -> None:
    class M:
        async def websocket(self, websocket: "fastapi.WebSocket") -> None: ...  # type: ignore[name-defined]  # noqa: F821,E501
        def chat_completions(self, request: Request) -> Any: ...

    assert shapes(M) == {"websocket": ArgShape.INPUT, "chat_completions": ArgShape.REQUEST}


def test_generators_are_detected() -> None:
    class M:
        async def predict(self, x: Any) -> Any:
            yield x

    assert check_model_class(M)["predict"].is_async_generator


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("class M:\n    pass", "M must define a predict method"),
        ("class M:\n    def predict(self): ...", "must take the input, the request, or both"),
        ("class M:\n    def predict(self, a, b, c): ...", "takes 3 arguments; at most 2"),
        ("class M:\n    def predict(self, a, b): ...", "the second must be the request"),
        ("class M:\n    def predict(self, r: Request, x): ...", "the second must be the request"),
        ("class M:\n    def predict(self, *args): ...", "parameters must be positional"),
        ("class M:\n    def preprocess(self, x): ...\n    def predict(self, r: Request): ...",
         "cannot be combined with preprocess"),
        ("class M:\n    def predict(self, x): ...\n    def postprocess(self, r: Request): ...",
         "postprocess must take predict's result"),
        ("class M:\n    def predict(self, x): ...\n    def is_healthy(self, x): ...",
         "`is_healthy` must have only one argument: `self`"),
        ("class M:\n    async def websocket(self, ws): ...\n    def predict(self, x): ...",
         "cannot have both `websocket` and any of `predict`, `preprocess`, `postprocess`"),
        ("class M:\n    async def websocket(self, ws): ...\n    def preprocess(self, x): ...",
         "cannot have both"),
        ("class M:\n    def websocket(self, ws): ...", "endpoints must be async function"),
        ("class M:\n    async def websocket(self, ws):\n        yield 1",
         "endpoints must be async function"),
        ("class M:\n    async def websocket(self, ws, r: Request): ...",
         "`websocket` must have only one argument: `websocket`"),
    ],
)
def test_breaches_name_the_method(source: str, message: str) -> None:
    namespace: dict[str, Any] = {"Request": Request}
    exec(source, namespace)  # noqa: S102 - building test classes
    with pytest.raises(ModelDefinitionError, match=message):
        check_model_class(namespace["M"])
