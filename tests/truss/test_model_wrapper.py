"""Truss's model-wrapper tests (basetenlabs/truss
`truss/tests/templates/server/test_model_wrapper.py`), run against a real twinserve daemon.

Truss builds a `ModelWrapper` in-process (reloading `sys.modules`, `chdir`, sleeping a second
for its load thread) and calls its methods with MagicMock requests; here the same model code
runs in a daemon and the same inputs go over HTTP. Truss's `app_path` is its test_data
`test_truss` as built into a container, with the model below; here it is that truss (copied
unchanged into tests/truss/models/test_truss) copied into the test's tmp_path with that
model. test_data `test_openai` is copied unchanged into tests/truss/models/test_openai.
Adaptations, each also noted where it is made:

- Truss reads `model_wrapper._model.load_count` after load; here the model logs the count
  at each load() (one added `logging` line), and the daemon's log is read.
- Truss calls `model_wrapper.predict` on a model whose load failed (the wrapper does not
  check readiness); a server never serves such a model (Truss's shuts down after a failed
  load), so the ported test checks the load attempts and the exit instead of that predict.

Not ported:
- test_model_wrapper_streaming_timeout: asserts only that ModelWrapper keeps
  `runtime.streaming_read_timeout` in its config dict; nothing the server does with it.
- test_trt_llm_truss_predict, test_trt_llm_truss_missing_model_py: Baseten's TRT-LLM
  extension (`_init_extension`, mocked) supplying the model or its `trt_llm` argument;
  twinserve's engine is configured with `engine:` and has no extension mechanism.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartDaemon
from tests.truss.conftest import TrussServer

MODELS = Path(__file__).resolve().parent / "models"

# Truss's model, with one line added (marked) to log what Truss reads as `_model.load_count`.
LOAD_ERROR_MODEL = """
import logging
class Model:
    def __init__(self):
        self.load_count = 0

    def load(self):
        self.load_count += 1
        logging.warning(f"load_count={self.load_count}")  # added: Truss reads load_count
        if self.load_count <= 2:
            raise RuntimeError('Simulated error')

    def predict(self, request):
        return request
    """


@pytest.fixture
def app_path(tmp_path: Path) -> Path:
    truss_container_app_path = Path(shutil.copytree(MODELS / "test_truss", tmp_path / "app"))
    (truss_container_app_path / "model" / "model.py").write_text(LOAD_ERROR_MODEL)
    return truss_container_app_path


def test_model_wrapper_load_error_once(app_path: Path,
                                       start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(app_path, wait="none")
    # Both attempts fail: the server does not serve the model; it goes down.
    daemon.wait_exit(timeout=15)
    # Truss retries a failed load() once (NUM_LOAD_RETRIES_TRUSS, default 1), a second
    # later: load() runs twice (Truss: `assert model_wrapper._model.load_count == 2`).
    assert "load_count=1" in daemon.log
    assert "load_count=2" in daemon.log, daemon.log
    assert "load_count=3" not in daemon.log


def test_model_wrapper_load_error_more_than_allowed(app_path: Path,
                                                    start_daemon_per_test: StartDaemon) -> None:
    # Truss's NUM_LOAD_RETRIES_TRUSS environment variable is twinserve's
    # runtime.load_retries (README, "Coming from Truss").
    (app_path / "config.yaml").write_text((app_path / "config.yaml").read_text()
                                          + "\nruntime:\n  load_retries: 0\n")
    daemon = start_daemon_per_test(app_path, wait="none")
    # Truss: `assert model_wrapper.load_failed`, after one attempt with no retry; a server
    # whose load failed goes down.
    daemon.wait_exit(timeout=10)
    assert "load_count=1" in daemon.log
    assert "load_count=2" not in daemon.log


def test_gather_generator_decodes_byte_chunks(truss_server: TrussServer) -> None:
    # Truss gathers a streaming predict's chunks into one JSON string when the client asks
    # for `Accept: application/json` (and is not the OpenAI SDK): `_gather_generator`.
    model = """
    class Model:
        async def predict(self, model_input):
            # A 4-byte emoji split across the chunk boundary must survive.
            yield b"hello \\xf0\\x9f"
            yield b"\\x98\\x80"
    """
    daemon = truss_server(model)

    response = httpx.post(f"{daemon.http_url}/v1/models/model:predict", json={},
                          headers={"Accept": "application/json"})

    assert response.status_code == 200
    assert response.json() == "hello \U0001f600"


def _post(daemon_url: str, path: str) -> Any:
    response = httpx.post(f"{daemon_url}{path}", json={})
    assert response.status_code == 200, response.text
    return response.json()


def test_open_ai_completion_endpoints(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_openai")

    predict_resp = _post(daemon.http_url, "/v1/models/model:predict")
    assert predict_resp == "predict"

    completions_resp = _post(daemon.http_url, "/v1/completions")
    assert completions_resp == "completions"

    chat_completions_resp = _post(daemon.http_url, "/v1/chat/completions")
    assert chat_completions_resp == "chat_completions"

    embeddings_resp = _post(daemon.http_url, "/v1/embeddings")
    assert embeddings_resp == "embeddings"


def test_messages_endpoint(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_openai")

    messages_resp = _post(daemon.http_url, "/v1/messages")
    assert messages_resp == "messages"

    responses_resp = _post(daemon.http_url, "/v1/responses")
    assert responses_resp == "responses"
