"""Cancel latency: from a client closing its connection to the backend observing the abort.

Starts a real daemon on the simulated backend. For each run it opens a raw HTTP connection,
sends a generation (streaming or unary) tagged with X-Request-Id, waits until the backend is
generating (the first chunk for streaming; in-flight == 1 for unary), takes
`time.monotonic()` and closes the socket. The backend logs the monotonic time at which its
abort hook ran; CLOCK_MONOTONIC is machine-wide, so the difference is the end-to-end
latency: kernel FIN delivery, aiohttp noticing, handler cancellation, the pipeline's
disconnect signal, the engine's cancel, and the backend's abort.

    python scripts/bench_cancel.py --runs 200
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from tests.harness import MODELS, DaemonProcess  # noqa: E402

_ABORT = re.compile(r"simulated abort observed request_id=(\S+) monotonic=([0-9.]+)")


def in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("twinserve_engine_in_flight "):
            return float(line.split()[1])
    raise RuntimeError("no in-flight gauge")


def one_run(daemon: DaemonProcess, request_id: str, stream: bool) -> float:
    body = json.dumps({"prompt": "x", "max_tokens": 100_000, "stream": stream}).encode()
    sock = socket.create_connection(("127.0.0.1", daemon.http_port))
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"X-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (request_id.encode(), len(body), body))
    if stream:
        seen = b""
        while b"\r\n\r\n" not in seen or len(seen.split(b"\r\n\r\n", 1)[1]) < 3:
            seen += sock.recv(4096)
    else:
        while in_flight(daemon.http_url) < 1:
            time.sleep(0.001)
        time.sleep(0.03)
    closed_at = time.monotonic()
    sock.close()
    return closed_at


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--token-delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    with DaemonProcess(MODELS / "engine_simulated", env={"PYTHONWARNINGS": "ignore"}) as daemon:
        daemon.wait_ready()
        for mode in ("stream", "unary"):
            closed: dict[str, float] = {}
            for i in range(args.runs):
                request_id = f"bench-{mode}-{i}"
                closed[request_id] = one_run(daemon, request_id, mode == "stream")
                time.sleep(0.01)
            deadline = time.monotonic() + 5
            observed: dict[str, float] = {}
            while len(observed) < len(closed) and time.monotonic() < deadline:
                observed = {m.group(1): float(m.group(2)) for m in map(_ABORT.search,
                            daemon.log_lines) if m and m.group(1) in closed}
                time.sleep(0.05)
            latencies = [(observed[r] - closed[r]) * 1000 for r in closed if r in observed]
            missing = len(closed) - len(latencies)
            print(f"{mode:6s} runs={len(closed)} missing={missing} "
                  f"p50={statistics.median(latencies):.3f} ms "
                  f"p99={percentile(latencies, 99):.3f} ms max={max(latencies):.3f} ms")
        metrics = httpx.get(f"{daemon.http_url}/metrics").text
        for line in metrics.splitlines():
            if line.startswith(("twinserve_engine_cancel_seconds_sum",
                                "twinserve_engine_cancel_seconds_count",
                                "twinserve_engine_in_flight")):
                print("daemon:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
