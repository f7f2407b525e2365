"""Loads slowly (until a file appears), can fail load, and has a switchable is_healthy."""

import asyncio
import os
from pathlib import Path
from typing import Any


class Model:
    def __init__(self) -> None:
        self._healthy = True

    async def load(self) -> None:
        if os.environ.get("LIFECYCLE_FAIL_LOAD"):
            raise RuntimeError("weights are corrupt")
        gate = os.environ.get("LIFECYCLE_LOAD_GATE")
        while gate and not Path(gate).exists():
            await asyncio.sleep(0.05)

    def is_healthy(self) -> bool:
        return self._healthy

    async def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        if "healthy" in model_input:
            self._healthy = bool(model_input["healthy"])
        return {"healthy": self._healthy}
