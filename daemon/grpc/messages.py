"""What a call brings, read the same way wherever it is read: its metadata as headers, and
its request messages, parsed so that one that does not parse is answered, not thrown.

grpc.aio calls a handler's deserializer before the handler runs; if it raises, grpc.aio
answers UNKNOWN with the parser's own text, and the call escapes our metrics and logs. So
the deserializer returns a `Malformed` instead, and the handler refuses it with
INVALID_ARGUMENT like any other bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from daemon.errors import InvalidInput
from daemon.request import Headers

M = TypeVar("M", bound=Message)


def metadata_headers(metadata: Iterable[tuple[str, Any]] | None) -> Headers:
    """A call's metadata as the headers model code and the key check see: text values only
    (binary `-bin` metadata arrives as bytes)."""
    return Headers({key: value for key, value in metadata or () if isinstance(value, str)})


class Malformed:
    """A request message that is not valid protobuf for its RPC."""

    __slots__ = ("_type_name",)

    def __init__(self, type_name: str) -> None:
        self._type_name = type_name

    def error(self) -> InvalidInput:
        return InvalidInput(f"the request is not a valid {self._type_name} message")


def parser(cls: type[M]) -> Callable[[bytes], M | Malformed]:
    """`cls.FromString`, returning Malformed instead of raising."""
    type_name = cls.DESCRIPTOR.full_name

    def parse(data: bytes) -> M | Malformed:
        try:
            return cls.FromString(data)
        except DecodeError:
            return Malformed(type_name)

    return parse
