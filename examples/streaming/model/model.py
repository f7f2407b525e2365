"""Streams text chunks as they are produced: {"n": 100} gives 100 chunks."""

from collections.abc import AsyncIterator
from typing import Any


class Model:
    async def predict(self, model_input: dict[str, Any]) -> AsyncIterator[str]:
        for i in range(int(model_input.get("n", 100))):
            yield f"chunk {i:04d}\n"
