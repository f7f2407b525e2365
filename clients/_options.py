"""What every client is configured with, whatever its transport, and its JSON encoding."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

DEFAULT_ROUTE = "predict"


@dataclasses.dataclass(frozen=True)
class CallOptions:
    timeout: float | None = None
    api_key: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def header_items(self) -> tuple[tuple[str, str], ...]:
        """HTTP headers, or gRPC metadata (which must be lower-case)."""
        items = tuple((key.lower(), value) for key, value in self.headers.items())
        if self.api_key is not None:
            items += (("authorization", f"Bearer {self.api_key}"),)
        return items


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(data: bytes) -> Any:
    return json.loads(data)
