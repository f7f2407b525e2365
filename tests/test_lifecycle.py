"""Start-up and readiness: ports open before load(), readiness follows load and is_healthy,
and a model that cannot load stops the daemon with a non-zero exit and a clear log."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import StartDaemon
from tests.harness import MODELS


def test_ready_only_after_load_returns(start_daemon: StartDaemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    daemon = start_daemon(MODELS / "lifecycle", wait="listening",
                          env={"LIFECYCLE_LOAD_GATE": str(gate)})
    assert httpx.get(f"{daemon.http_url}/health/live").status_code == 200
    loading = httpx.get(f"{daemon.http_url}/health/ready")
    assert loading.status_code == 503
    assert loading.json()["error"]["message"] == "model is loading"
    early = httpx.post(f"{daemon.http_url}/predict", json={})
    assert early.status_code == 503 and early.json()["error"]["type"] == "unavailable_error"
    gate.touch()
    daemon.wait_ready(timeout=10)
    assert httpx.post(f"{daemon.http_url}/predict", json={}).json() == {"healthy": True}


def test_is_healthy_feeds_readiness(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "lifecycle")
    httpx.post(f"{daemon.http_url}/predict", json={"healthy": False})
    ready = httpx.get(f"{daemon.http_url}/health/ready")
    assert ready.status_code == 503
    assert "is_healthy returned False" in ready.json()["error"]["message"]
    for probe in ("/v1/models/model", "/ping"):  # Truss's probes answer with the status
        answer = httpx.get(f"{daemon.http_url}{probe}")
        assert answer.status_code == 503
        assert answer.json()["error"].startswith(
            "model reports unhealthy (is_healthy returned False) (request id ")
    assert httpx.get(f"{daemon.http_url}/v1/models/model/loaded").status_code == 200
    httpx.post(f"{daemon.http_url}/predict", json={"healthy": True})
    assert httpx.get(f"{daemon.http_url}/health/ready").status_code == 200


def test_load_failure_exits_non_zero_with_traceback(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "lifecycle", wait="none", env={"LIFECYCLE_FAIL_LOAD": "1"})
    assert daemon.wait_exit() == 1
    assert "model load failed" in daemon.log
    assert "Traceback" in daemon.log and "RuntimeError: weights are corrupt" in daemon.log


def _model_dir(root: Path, source: str, config: str = "") -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.py").write_text(source)
    (root / "config.yaml").write_text(config)
    return root


def test_bad_signature_exits_naming_the_method(start_daemon: StartDaemon, tmp_path: Path) -> None:
    model = _model_dir(tmp_path,
                       "class Model:\n    def predict(self, a, b, c):\n        return a\n")
    daemon = start_daemon(model, wait="none")
    assert daemon.wait_exit() == 1
    assert "predict(self, a, b, c): takes 3 arguments; at most 2" in daemon.log


def test_config_error_names_the_key(start_daemon: StartDaemon, tmp_path: Path) -> None:
    model = _model_dir(tmp_path, "class Model:\n    def predict(self, x):\n        return x\n",
                       "runtime:\n  predict_concurrency: many\n")
    daemon = start_daemon(model, wait="none")
    assert daemon.wait_exit() == 1
    assert "runtime.predict_concurrency: expected a positive integer, got 'many'" in daemon.log


def test_missing_model_file_is_reported(start_daemon: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model_class_filename: missing.py\n")
    daemon = start_daemon(tmp_path, wait="none")
    assert daemon.wait_exit() == 1
    assert "missing.py: model file not found" in daemon.log


def test_backend_flag_runs_the_engine_section_on_another_backend(
        start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "engine_simulated", args=["--backend", "hf"])
    daemon.wait_for_log("hf backend loaded")  # the embedded model, not the simulated backend
    answer = httpx.post(f"{daemon.http_url}/predict",
                        json={"prompt": "Hi", "max_tokens": 2, "temperature": 0}, timeout=60)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2


def test_backend_flag_needs_an_engine_section(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "lifecycle", wait="none", args=["--backend", "vllm"])
    assert daemon.wait_exit() == 1
    assert "--backend vllm:" in daemon.log and "has no engine: section" in daemon.log
