"""Sleeps in a sync predict and reports how many calls overlapped, and on which thread."""

import threading
import time
from typing import Any


class Model:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._peak = 0

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        if model_input.get("report"):
            with self._lock:
                peak, self._peak = self._peak, 0
            return {"peak": peak}
        with self._lock:
            self._running += 1
            self._peak = max(self._peak, self._running)
        time.sleep(model_input.get("sleep", 0.2))
        with self._lock:
            self._running -= 1
        return {"thread": threading.current_thread().name}
