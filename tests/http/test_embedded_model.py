"""`twinserve serve` with no model directory answers with the embedded SmolLM2 model."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import DaemonProcess

pytest.importorskip("transformers", reason="the embedded model needs the `hf` extra")


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(None)  # first run ever converts the GGUF (~35 s)


def test_answers_a_real_prompt(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/predict", timeout=60, json={
        "prompt": "What is the capital of France?", "max_tokens": 6, "temperature": 0})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "Paris" in body["text"]
    assert body["usage"]["completion_tokens"] <= 6


def test_streams_text_chunks(daemon: DaemonProcess) -> None:
    with httpx.stream("POST", f"{daemon.http_url}/predict", timeout=60, json={
            "prompt": "Say hello.", "max_tokens": 4, "temperature": 0, "stream": True}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        chunks = list(reply.iter_text())
    assert "".join(chunks).strip()
