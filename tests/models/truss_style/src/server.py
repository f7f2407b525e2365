"""Written the way Truss models are: fastapi.Request annotations, HTTPException, kwargs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HTTPException(Exception):
    """Shaped like fastapi.HTTPException (status_code, detail), as Truss models raise it."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class TrussModel:
    def __init__(self, config: dict[str, Any], data_dir: Path, secrets: Any) -> None:
        self._config = config
        self._data_dir = data_dir
        self._secrets = secrets
        self._weights = ""

    def load(self) -> None:
        self._weights = (self._data_dir / "weights.txt").read_text().strip()

    def predict(self, model_input: dict[str, Any], request: fastapi.Request) -> dict[str, Any]:  # type: ignore[name-defined]  # noqa: F821
        if model_input.get("forbidden"):
            raise HTTPException(status_code=403, detail="not allowed for you")
        secret = model_input.get("secret")
        return {
            "weights": self._weights,
            "owner": self._config["model_metadata"]["owner"],
            "secret": self._secrets[secret] if secret else None,
            "has_request": request.headers.get("user-agent") is not None,
        }
