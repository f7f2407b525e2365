"""Start the real daemon as a subprocess on free loopback ports, for tests and benchmarks.

Tests get theirs from the fixtures in conftest.py (`start_daemon`, `start_daemon_per_test`,
`daemons`), which stop them; scripts/ build `DaemonProcess` directly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MODELS = Path(__file__).resolve().parent / "models"

_LISTENING = re.compile(r"listening http=(\S+):(\d+)(?: grpc=(\S+):(\d+))?")


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` and its children (the hf backend's engine), in MiB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mib(int(child))
    return total


def accepts(port: int) -> bool:
    """A connection to loopback `port` is accepted now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def start_pinned(cmd: Sequence[str], pattern: str,
                 cpu: str = "0") -> tuple[subprocess.Popen[str], re.Match[str]]:
    """`cmd` pinned to CPU `cpu` (taskset), returned with the match once a line of its output
    matches `pattern` (within 30 s): benchmarks keep servers on one core and their load on
    the other. Its output is drained after, so a chatty server never blocks on a full pipe."""
    proc = subprocess.Popen(["taskset", "-c", cpu, *cmd], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, match
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"{list(cmd)} did not start")


def copy_model(root: Path, source: Path, config: str) -> Path:
    """`source`'s model code under a config.yaml of the test's own, in `root`."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "model.py").write_text((source / "model" / "model.py").read_text())
    (root / "config.yaml").write_text(config)
    return root


class DaemonProcess:
    """One `twinserve serve` subprocess. Its stderr and stdout are collected in
    `.log_lines`."""

    def __init__(self, model_dir: Path | None, *, env: Mapping[str, str] | None = None,
                 args: Sequence[str] = (), command: Sequence[str] | None = None) -> None:
        """`command`, when given, is run as it is (a container's entry command, settings in
        `env`) instead of `python -m daemon serve model_dir` on free loopback ports + args."""
        if command is not None:
            if model_dir is not None or args:
                raise ValueError("give either a command or model_dir and args")
            cmd = list(command)
        else:
            cmd = [sys.executable, "-m", "daemon", "serve"]
            if model_dir is not None:
                cmd.append(str(model_dir))
            cmd += ["--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", *args]
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_lines: list[str] = []
        self._listening = threading.Event()
        self.http_port = 0
        self.grpc_port = 0
        # stdout too, as a container's log has it: what model code print()s.
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            self._collect(self.proc.stdout)

    def _collect(self, stream: Iterable[str]) -> None:
        for line in stream:
            self.log_lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not self._listening.is_set():
                self.http_port = int(match.group(2))
                self.grpc_port = int(match.group(4) or 0)
                self._listening.set()

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def wait_for_log(self, *texts: str, timeout: float = 5.0) -> list[str]:
        """The log lines holding every one of `texts`, once there is one: the daemon writes
        its log on its own schedule, so a line may land after the answer that caused it."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log_lines if all(text in line for text in texts)]
            if lines:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {texts!r} after {timeout}s:\n{self.log}")
            time.sleep(0.02)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def peak_rss_mib(self) -> float:
        """The daemon's peak resident memory so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def wait_listening(self, timeout: float = 30.0) -> DaemonProcess:
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode} before listening:\n"
                                   f"{self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon not listening after {timeout}s:\n{self.log}")
        return self

    def wait_ready(self, timeout: float = 60.0) -> DaemonProcess:
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(f"{self.http_url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        """SIGINT, as Ctrl-C: the drain without SIGTERM's grace for load balancers
        (runtime.drain_grace_s), which a test daemon has none of."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
