"""pydantic-typed inputs and outputs, read from a model's annotations as Truss reads them.

A `predict(self, model_input: SomeModel)` (or the `preprocess` before it) gets the body
parsed into `SomeModel`; input that does not validate is a 400 listing each field in
Truss's words. The return annotation of `postprocess` (or `predict`) gives the output
schema, served with the input's at `GET /v1/models/{name}/schema`. pydantic is never
imported here: a model that annotates with it has imported it already.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import sys
import textwrap
import typing
from typing import Any

from daemon import codec
from daemon.errors import InvalidInput

_STREAMS = (collections.abc.Generator, collections.abc.AsyncGenerator,
            collections.abc.Iterator, collections.abc.AsyncIterator)


def pydantic_model(annotation: Any) -> type | None:
    """`annotation` if it is a pydantic model class (pydantic 1 or 2), else None."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(annotation, type):
        return None
    bases = [pydantic.BaseModel]
    v1 = sys.modules.get("pydantic.v1")
    if v1 is not None:
        bases.append(v1.BaseModel)
    return annotation if issubclass(annotation, tuple(bases)) else None


class InputModel:
    """Parses a call's input into the model's pydantic class."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def parse(self, data: bytes, binary: bool) -> Any:
        """A JSON body parsed by pydantic itself (as Truss does); msgpack unpacked first."""
        if binary:
            validate = getattr(self.cls, "model_validate", None) or getattr(self.cls,
                                                                            "parse_obj")
            return self._parsed(validate, codec.unpack(data))
        validate = getattr(self.cls, "model_validate_json", None) or getattr(self.cls,
                                                                             "parse_raw")
        return self._parsed(validate, data)

    @staticmethod
    def _parsed(validate: Any, value: Any) -> Any:
        try:
            return validate(value)
        except ValueError as exc:  # pydantic's ValidationError, in both versions
            raise InvalidInput(_describe(exc)) from None


def _describe(exc: ValueError) -> str:
    """Truss's wording: "Input Parsing Error:" then "  `field.sub[0]`: message." a line."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"Input Parsing Error, {exc}"
    try:
        found = errors(include_url=False, include_input=False)
    except TypeError:  # pydantic 1 takes no arguments
        found = errors()
    lines = ["Input Parsing Error:" if len(found) == 1 else "Input Parsing Errors:"]
    for error in found:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                        for part in error["loc"]).lstrip(".")
        lines.append(textwrap.indent(f"`{where}`: {error['msg']}.", "  "))
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Schema:
    """What `GET /v1/models/{name}/schema` answers (Truss's TrussSchema.serialize())."""

    input_type: type | None
    output_type: type | None
    supports_streaming: bool | None

    def serialize(self) -> dict[str, Any]:
        return {"input_schema": _json_schema(self.input_type),
                "output_schema": _json_schema(self.output_type),
                "supports_streaming": self.supports_streaming}

    @classmethod
    def of(cls, input_annotation: Any, output_annotation: Any) -> Schema | None:
        """None when neither end is a pydantic model, nor the output a stream (as Truss)."""
        input_type = pydantic_model(input_annotation)
        output_type, streams = _output(output_annotation)
        if input_type is None and output_type is None and streams is None:
            return None
        return cls(input_type, output_type, streams)


def _json_schema(cls: type | None) -> Any:
    if cls is None:
        return None
    schema = getattr(cls, "model_json_schema", None) or getattr(cls, "schema")
    return schema()


def _output(annotation: Any) -> tuple[type | None, bool | None]:
    """Truss's four cases: a model; a stream; Awaitable[model]; Union[model, stream]."""
    model = pydantic_model(annotation)
    if model is not None:
        return model, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(origin, type) and issubclass(origin, _STREAMS):
        return None, True
    if isinstance(origin, type) and issubclass(origin, collections.abc.Awaitable) and args:
        model = pydantic_model(args[0])
        return (model, False) if model is not None else (None, None)
    if origin is typing.Union and len(args) == 2:
        models = [pydantic_model(_awaited(arg)) for arg in args]
        streams = [arg for arg in args if isinstance(typing.get_origin(arg), type)
                   and issubclass(typing.get_origin(arg), _STREAMS)]
        found = [model for model in models if model is not None]
        if len(found) == 1 and len(streams) == 1:
            return found[0], True
    return None, None


def _awaited(annotation: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(origin, type) and issubclass(origin, collections.abc.Awaitable) and args:
        return args[0]
    return annotation
