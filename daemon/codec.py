"""JSON in and out, in one place: orjson when installed, the standard library otherwise."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgpack

from daemon import msgpack_ext
from daemon.errors import InvalidInput, ModelError

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a default dependency
    orjson = None  # type: ignore[assignment]


MAX_JSON_DEPTH = 128
"""How deeply a request's JSON may nest: far beyond real inputs, and within what the
encoder can write back (orjson stops at 255 levels), so an echoed input cannot fail on
its way out as a 500."""


def loads(data: bytes) -> Any:
    """Parse a request body as JSON, raising InvalidInput that says where it broke."""
    if not data:
        raise InvalidInput("request body is empty; expected JSON")
    try:
        value = orjson.loads(data) if orjson is not None else json.loads(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc
    # A short body, or one with fewer brackets than the limit, cannot nest past it: most
    # bodies skip the walk.
    if len(data) > 2 * MAX_JSON_DEPTH and data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH \
            and _deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidInput(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


# What parsing a body builds (CPython 3.11, 64-bit, measured): JSON is bounded by counting
# its structure; msgpack's structure cannot be counted without parsing, so it is charged a
# typical expansion, not a bound; other bodies are handed over as bytes.
BodyForm = Literal["json", "msgpack", "bytes"]
_JSON_COST = {b"{": 180, b"[": 64, b'"': 32, b",": 32, b":": 24}  # bytes built per char
_MSGPACK_EXPANSION = 8


def parsed_size_bound(data: bytes, form: BodyForm) -> int:
    """The memory a body takes, raw plus parsed: an upper bound for JSON (each `{` a dict
    with its first keys, each `[` a list, each `"` half a string, each `,` and `:` a value or
    key slot), an estimate for msgpack."""
    if form == "json":
        return len(data) + sum(data.count(char) * cost for char, cost in _JSON_COST.items())
    if form == "msgpack":
        return len(data) * (1 + _MSGPACK_EXPANSION)
    return len(data)


def parsed_size_worst(size: int, form: BodyForm) -> int:
    """The most `parsed_size_bound` can say of a body of `size` bytes, before reading it.
    JSON's worst is `[{},{},...]`: a dict and a slot for every 3 bytes (plus the outer
    brackets)."""
    if form == "json":
        return size + size * (_JSON_COST[b"{"] + _JSON_COST[b","]) // 3 \
            + _JSON_COST[b"{"] + _JSON_COST[b"["]
    if form == "msgpack":
        return size * (1 + _MSGPACK_EXPANSION)
    return size


def form_of(content_type: str) -> BodyForm:
    """How a body of this content type is parsed: "json", "msgpack" or "bytes"."""
    if is_binary(content_type):
        return "msgpack"
    media = content_type.split(";", 1)[0].strip().lower()
    return "json" if media == "application/json" or media.endswith("+json") else "bytes"


def _json_default(value: Any) -> Any:
    """What JSON cannot hold natively, as Truss sends it: numpy arrays orjson does not take
    (non-contiguous, float16, ...) as lists, numpy scalars as numbers, pydantic models as
    their JSON dump. Called only for such values, so plain results never pay for it."""
    dump = getattr(value, "model_dump", None)  # pydantic 2
    if callable(dump):
        return dump(mode="json")
    for convert in ("tolist", "dict"):  # numpy arrays and scalars; pydantic 1
        method = getattr(value, convert, None)
        if callable(method):
            return method()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Serialise a model's result; TypeError names what could not be encoded."""
    if orjson is not None:
        try:
            return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"result is not JSON-serialisable: {exc}") from exc
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"result is not JSON-serialisable: {exc}") from exc


BINARY_CONTENT_TYPES = frozenset(
    {"application/octet-stream", "application/msgpack", "application/x-msgpack",
     "application/vnd.msgpack"}
)


def is_binary(content_type: str) -> bool:
    """Whether a body of this type carries msgpack (Truss's binary convention)."""
    if content_type == "application/json":
        return False  # the common case, without the parsing
    return content_type.split(";", 1)[0].strip().lower() in BINARY_CONTENT_TYPES


def unpack(data: bytes) -> Any:
    """A msgpack body, with Truss's extensions (numpy arrays as msgpack-numpy writes them,
    dates, times, decimals and UUIDs) decoded as Truss's clients encode them."""
    try:
        return msgpack.unpackb(data, raw=False, object_hook=msgpack_ext.decode)
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise InvalidInput(f"request body is not valid msgpack: {exc}") from exc


def pack(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True,  # type: ignore[no-any-return]
                             default=msgpack_ext.encode)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"result cannot be encoded as msgpack: {exc}") from exc


def encode_result(route: str, value: Any) -> bytes:
    """A route's (non-streamed) result as both transports send it; ModelError if it can't be."""
    try:
        if orjson is not None:  # dumps() inlined: this runs on every call
            return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        return dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is one
        raise ModelError(f"{route} returned a value that cannot be sent as JSON: {exc}") from exc


def json_chunk(route: str, chunk: Any) -> bytes:
    """A streamed chunk that is neither str nor bytes, as JSON; ModelError if it can't be."""
    try:
        return dumps(chunk)
    except TypeError as exc:
        raise ModelError(f"{route} yielded a chunk that cannot be sent as JSON: {exc}") from exc


def encode_chunk(chunk: Any) -> bytes:
    """One streamed /predict chunk on the HTTP wire: str and bytes as they are, anything
    else a JSON line."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    return json_chunk("predict", chunk) + b"\n"
