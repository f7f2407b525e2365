"""The hf backend's engine process: its batch loop dying, signals meant for the daemon, and
the daemon dying under it."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.cli import BUILTIN_LLM_DIR
from tests.conftest import StartDaemon
from tests.engine.test_batching import complete

pytest.importorskip("transformers", reason="the hf backend needs the `hf` extra")

from daemon.config import default_cache_dir  # noqa: E402
from daemon.engine import hf_engine  # noqa: E402
from daemon.engine.embedded import converted_dir  # noqa: E402
from daemon.engine.hf_sampling import request_kwargs  # noqa: E402

WAIT_S = 30.0


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def engine_pid(log: str) -> int:
    found = re.findall(r"hf engine process (\d+) ready", log)
    assert found, f"no engine process in the log:\n{log}"
    return int(found[-1])


GREEDY = request_kwargs(greedy=True, temperature=1.0, top_k=0, top_p=1.0, min_tokens=0,
                        seed=None)


@dataclass
class Running:
    """An Engine on the embedded model, running in a thread of this process; the test is
    the daemon at the other end of its socket pair."""

    model: Any
    conn: Connection
    thread: threading.Thread


@pytest.fixture
def engine() -> Iterator[Running]:
    settings = hf_engine.EngineSettings(source=str(converted_dir(default_cache_dir(os.environ))),
                                        dtype="float32", max_batch_size=4)
    loaded = hf_engine.load(settings)
    manager = hf_engine.start_manager(loaded, settings)
    ours, theirs = socket.socketpair()
    channel = hf_engine._Channel(Connection(theirs.detach()))
    thread = threading.Thread(target=hf_engine.Engine(channel, manager).run)
    thread.start()
    running = Running(loaded.model, Connection(ours.detach()), thread)
    yield running
    if thread.is_alive():
        running.conn.send(("stop",))
        thread.join(WAIT_S)
    manager.stop(block=True, timeout=30)
    running.conn.close()
    channel.conn.close()


def test_a_failing_forward_pass_fails_the_batch_and_ends_the_engine(engine: Running) -> None:
    conn = engine.conn
    for request_id in ("a", "b"):
        conn.send(("add", request_id, [1, 2, 3], 500, -1, GREEDY))
    outputs: dict[str, list[Any]] = {"a": [], "b": []}
    while not all(outputs.values()):  # both are generating
        assert conn.poll(WAIT_S), "no outputs"
        message = conn.recv()
        if message[0] == "outputs":
            for request_id, tokens, _, _ in message[1]:
                outputs[request_id].append(tokens)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected: a kernel failed")

    engine.model.forward = fail
    errors: dict[str, str] = {}
    while len(errors) < 2:
        assert conn.poll(WAIT_S), f"no error for every request: {errors}"
        message = conn.recv()
        if message[0] == "outputs":
            errors.update({request_id: error for request_id, _, finished, error
                           in message[1] if error is not None and finished})
    assert set(errors) == {"a", "b"} and "injected" in errors["a"]
    engine.thread.join(WAIT_S)
    assert not engine.thread.is_alive(), "the engine went on after its batch loop died"


def test_a_request_the_library_cannot_add_is_refused_and_the_engine_goes_on(
        engine: Running) -> None:
    conn = engine.conn
    conn.send(("add", "broken", None, 4, -1, GREEDY))  # no prompt: the library raises
    conn.send(("add", "fine", [1, 2, 3], 4, -1, GREEDY))
    refused, finished = False, False
    while not (refused and finished):
        assert conn.poll(WAIT_S), f"refused={refused} finished={finished}"
        message = conn.recv()
        refused = refused or message == ("refused", "broken")
        if message[0] == "outputs":
            finished = finished or any(request_id == "fine" and done and error is None
                                       for request_id, _, done, error in message[1])
    conn.send(("stop",))
    engine.thread.join(WAIT_S)
    assert not engine.thread.is_alive()


def test_the_engine_ignores_signals_for_the_daemon_and_ends_with_it(
        start_daemon: StartDaemon) -> None:
    daemon = start_daemon(None, timeout=300)
    pid = engine_pid(daemon.log)
    # A Ctrl-C in a terminal, or a service manager signalling the whole group: the daemon
    # drains and stops its engine itself.
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    answer = complete(daemon, {"prompt": "Hello", "max_tokens": 3, "ignore_eos": True})
    assert answer["usage"]["completion_tokens"] == 3
    assert not gone(pid)
    daemon.proc.kill()  # the daemon dies at once: its engine must not outlive it
    daemon.proc.wait()
    deadline = time.monotonic() + WAIT_S
    while not gone(pid):
        assert time.monotonic() < deadline, "the engine process outlived its daemon"
        time.sleep(0.05)


def test_a_drained_daemon_stops_its_engine_which_ran_the_threads_asked(
        start_daemon: StartDaemon, tmp_path: Path) -> None:
    raw = yaml.safe_load((BUILTIN_LLM_DIR / "config.yaml").read_text())
    raw["engine"]["threads"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    daemon = start_daemon(tmp_path, timeout=300)
    pid = engine_pid(daemon.log)
    assert "as torch.float32, 1 torch threads" in daemon.log
    assert daemon.stop() == 0
    assert gone(pid)
