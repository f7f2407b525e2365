"""Truss's model-schema tests (basetenlabs/truss `truss/tests/test_model_schema.py`), run
against a real twinserve daemon instead of a Truss container.

A Truss model whose predict (or preprocess / postprocess) is annotated with pydantic models
gets its input parsed into that model (a 400 "Input Parsing Error" when it does not fit), its
output serialized from it, and its schema published at `GET /v1/models/{name}/schema`:
`{"input_schema", "output_schema", "supports_streaming"}`, 404 `{"error": "No schema found"}`
for a model without pydantic annotations, 503 while the model is not loaded.

Each test keeps Truss's name, model source and assertions. Adaptations:
- Clients are httpx, not requests; Truss's `truss_msgpack_serialize` of a plain dict is
  `msgpack.packb` (the numpy/datetime hooks it adds play no part here).
- `test_data` trusses (test_basic_truss, annotated_types_truss) are copied unchanged into
  tests/truss/models/; no config key was dropped.
- Truss's `x-baseten-error-source` / `x-baseten-error-code` response headers are Baseten
  platform details: not asserted.

Not ported: none; every test in the module is here.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import msgpack

from tests.conftest import StartDaemon
from tests.harness import DaemonProcess
from tests.truss.conftest import TrussServer

MODELS = Path(__file__).resolve().parent / "models"

DEFAULT_CONFIG = """model_name: test-truss"""

PROMPT_INPUT_SCHEMA = {
    "properties": {"prompt": {"title": "Prompt", "type": "string"}},
    "required": ["prompt"],
    "title": "ModelInput",
    "type": "object",
}
GENERATED_TEXT_OUTPUT_SCHEMA = {
    "properties": {
        "generated_text": {"title": "Generated Text", "type": "string"}
    },
    "required": ["generated_text"],
    "title": "ModelOutput",
    "type": "object",
}


def _predict_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model:predict"


def _schema_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model/schema"


def test_truss_with_no_annotations(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_basic_truss")

    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})
    assert response.json() == {"prompt": "value"}

    schema_response = httpx.get(_schema_url(daemon))
    assert schema_response.status_code == 404

    assert schema_response.json()["error"] == "No schema found"


def test_truss_with_non_pydantic_annotations(truss_server: TrussServer) -> None:
    truss_non_pydantic_annotations = """
class Model:
    def predict(self, request: str) -> list[str]:
        return ["hello"]
"""
    daemon = truss_server(truss_non_pydantic_annotations, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})
    assert response.json() == ["hello"]

    schema_response = httpx.get(_schema_url(daemon))
    assert schema_response.status_code == 404
    assert schema_response.json()["error"] == "No schema found"


def test_truss_with_no_annotations_failed_load(truss_server: TrussServer) -> None:
    truss_long_load = """
class Model:
    def load(self):
        raise Exception("Failed load")

    def predict(self, request):
        return "hello"
"""
    daemon = truss_server(truss_long_load, DEFAULT_CONFIG, wait="listening")

    # Can't wait for readiness (the failed load keeps the server unready), so poll until
    # it responds at all (Truss: every 1 s for up to 30 s, on connection errors only).
    # Unlike Truss, stop polling once the daemon has exited: no answer will come.
    deadline = time.monotonic() + 30
    while True:
        try:
            schema_response = httpx.get(_schema_url(daemon))
            break
        except httpx.ConnectError:
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)

    # If the load has not successfully completed,
    # we return a 503 instead of 404, so that clients
    # know that this can be retried.
    assert schema_response.status_code == 503


def test_truss_with_annotated_inputs_outputs(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "annotated_types_truss")
    # Valid JSON input.
    json_input = {"prompt": "value"}
    response = httpx.post(_predict_url(daemon), json=json_input)
    assert response.json() == {"generated_text": "value"}

    # Valid binary input.
    byte_input = msgpack.packb(json_input)
    response = httpx.post(
        _predict_url(daemon),
        content=byte_input,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.content == b"\x81\xaegenerated_text\xa5value"

    # An invalid input
    response = httpx.post(_predict_url(daemon), json={"bad_key": "value"})
    assert response.status_code == 400
    assert "error" in response.json()
    assert (
        "Input Parsing Error:\n  `prompt`: Field required."
        in response.json()["error"]
    )

    # Schema response.
    schema_response = httpx.get(_schema_url(daemon))
    schema = schema_response.json()
    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] == GENERATED_TEXT_OUTPUT_SCHEMA
    assert not schema["supports_streaming"]


def test_truss_annotated_inputs_streaming_and_output(truss_server: TrussServer) -> None:
    streaming_truss = """
from pydantic import BaseModel
from typing import Union, Generator

class ModelInput(BaseModel):
    prompt: str

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    def predict(self, request: ModelInput) -> Union[ModelOutput, Generator[str, None, None]]:
        return ModelOutput(generated_text=request.prompt)
"""
    daemon = truss_server(streaming_truss, DEFAULT_CONFIG)
    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})

    assert response.json() == {"generated_text": "value"}

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] == GENERATED_TEXT_OUTPUT_SCHEMA
    assert schema["supports_streaming"]


def test_truss_annotated_inputs_just_streaming(truss_server: TrussServer) -> None:
    streaming_truss = """
from pydantic import BaseModel
from typing import Generator

class ModelInput(BaseModel):
    prompt: str

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    def predict(self, prompt: ModelInput) -> Generator[str, None, None]:
        def inner():
            for i in range(2):
                yield str(i)
        return inner()
"""
    daemon = truss_server(streaming_truss, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})

    assert response.content == b"01"

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] is None
    assert schema["supports_streaming"]


def test_async_truss(truss_server: TrussServer) -> None:
    truss_contents = """
from pydantic import BaseModel
from typing import AsyncGenerator
from typing import Awaitable


class ModelInput(BaseModel):
    prompt: str

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    async def predict(self, request: ModelInput) -> Awaitable[ModelOutput]:
        return ModelOutput(generated_text=request.prompt)
"""
    daemon = truss_server(truss_contents, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})

    assert response.json() == {"generated_text": "value"}

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] == GENERATED_TEXT_OUTPUT_SCHEMA
    assert not schema["supports_streaming"]


def test_async_truss_streaming(truss_server: TrussServer) -> None:
    streaming_truss = """
from pydantic import BaseModel
from typing import AsyncGenerator

class ModelInput(BaseModel):
    prompt: str

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    async def predict(self, prompt: ModelInput) -> AsyncGenerator[str, None]:
        for i in range(2):
            yield str(i)
"""
    daemon = truss_server(streaming_truss, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value"})

    assert response.content == b"01"

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] is None
    assert schema["supports_streaming"]


def test_async_truss_streaming_and_non_streaming(truss_server: TrussServer) -> None:
    streaming_truss = """
from pydantic import BaseModel
from typing import Union, AsyncGenerator, Awaitable

class ModelInput(BaseModel):
    prompt: str
    stream: bool

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    async def predict(self, request: ModelInput) -> Union[Awaitable[ModelOutput], AsyncGenerator[str, None]]:
        if request.stream:
            def inner():
                for i in range(2):
                    yield str(i)
            return inner()
        else:
            return ModelOutput(generated_text=request.prompt)
"""  # noqa: E501 (Truss's model source, kept as written)
    daemon = truss_server(streaming_truss, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value", "stream": False})

    assert response.json() == {"generated_text": "value"}
    assert response.status_code == 200

    response = httpx.post(_predict_url(daemon), json={"prompt": "value", "stream": True})

    assert response.status_code == 200
    assert response.content == b"01"

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == {
        "properties": {
            "prompt": {"title": "Prompt", "type": "string"},
            "stream": {"title": "Stream", "type": "boolean"},
        },
        "required": ["prompt", "stream"],
        "title": "ModelInput",
        "type": "object",
    }
    assert schema["output_schema"] == GENERATED_TEXT_OUTPUT_SCHEMA
    assert schema["supports_streaming"]


def test_preprocess_postprocess(truss_server: TrussServer) -> None:
    streaming_truss = """
from pydantic import BaseModel

class ModelInput(BaseModel):
    prompt: str

class ModelOutput(BaseModel):
    generated_text: str

class Model:
    def preprocess(self, request: ModelInput) -> str:
        return request.prompt

    def predict(self, request: str) -> str:
        return request

    def postprocess(self, request: str) -> ModelOutput:
        return ModelOutput(generated_text=request)
"""
    daemon = truss_server(streaming_truss, DEFAULT_CONFIG)

    response = httpx.post(_predict_url(daemon), json={"prompt": "value", "stream": False})

    assert response.json() == {"generated_text": "value"}
    assert response.status_code == 200

    schema_response = httpx.get(_schema_url(daemon))

    schema = schema_response.json()

    assert schema["input_schema"] == PROMPT_INPUT_SCHEMA
    assert schema["output_schema"] == GENERATED_TEXT_OUTPUT_SCHEMA
    assert not schema["supports_streaming"]
