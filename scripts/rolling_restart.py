"""Rolling restart under load: N replicas behind a real HTTP load balancer (haproxy) and gRPC
client-side round robin, each restarted in turn (SIGTERM, wait for exit, start again on the
same ports, wait until it is back in rotation) while steady mixed load runs on both
transports. Reports calls made, failed (with causes) and retried per transport, and p50/p99
latency steady vs during restarts.

    python scripts/rolling_restart.py --replicas 3 --seconds 90       # each replica twice
    python scripts/rolling_restart.py --replicas 2 --restarts 1 --seconds 20 --json out.json

The balancers are configured the way docs/drain.md recommends:
- haproxy (from Debian) probes `GET /health/ready` every 0.5 s (down after 2 failures, up
  after 2 successes), so it stops sending to a draining replica within its grace, and
  retries only a connection that failed before the request was sent (`retry-on
  conn-failure`, haproxy's default, written out; `option redispatch` sends that retry to
  another replica). A request that reached a replica is never sent again.
- the gRPC channel balances with grpc's own `round_robin` over `ipv4:` addresses and
  watches each replica's grpc.health.v1 (`healthCheckConfig`), so it stops sending to a
  draining or loading replica at once. No retry policy is configured: grpc only retries,
  transparently, a call the server never saw (gRFC A6), which is invisible to the caller.
The load's own clients never retry.

The model (default): the built-in text-generation model on the simulated engine (a
config.yaml written to the temp dir). `--model-dir` serves another directory, which must take
{"prompt", "max_tokens", "stream"} on predict and serve /v1/chat/completions, as every
engine model does; its own runtime.drain_grace_s applies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import dataclasses
import io
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import DaemonProcess, accepts  # noqa: E402
from twinserve_wire import service  # noqa: E402
from twinserve_wire.proto.v1.model_pb2 import (  # noqa: E402
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)

MODEL_CONFIG = """\
model_name: rolling
engine:
  backend: simulated
  token_delay_ms: 10
runtime:
  predict_concurrency: 64
server:
  access_log: false
"""
MODEL_ROUTES = ("predict", "chat_completions")
BACK_IN_ROTATION_S = 30.0  # a restarted replica must take calls on both transports by then
HAPROXY_MISSING = ("haproxy is not installed: scripts/install.sh installs it (apt-get, as "
                   "root), or run `sudo apt-get install haproxy`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- replicas and the load balancer -----------------------------------------------------------


class Replica:
    """One daemon on fixed loopback ports, restarted on the same ports."""

    def __init__(self, name: str, model_dir: Path) -> None:
        self.name = name
        self.model_dir = model_dir
        self.http_port, self.grpc_port = free_port(), free_port()
        self.daemon = self._start()

    def _start(self) -> DaemonProcess:
        return DaemonProcess(None, command=[
            sys.executable, "-m", "daemon", "serve", str(self.model_dir), "--host", "127.0.0.1",
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)])

    def wait_ready(self) -> None:
        self.daemon.wait_ready(60)

    def stop_gracefully(self) -> int:
        """SIGTERM, as an orchestrator sends it; the exit status once the drain is done."""
        self.daemon.proc.terminate()
        return self.daemon.wait_exit(120)

    def start_again(self) -> None:
        self.daemon = self._start()

    def model_calls(self) -> dict[str, float]:
        """Calls to the model routes this process has answered, by transport."""
        counts = {"http": 0.0, "grpc": 0.0}
        text = httpx.get(f"{self.daemon.http_url}/metrics", timeout=5).text
        for line in text.splitlines():
            if not line.startswith("twinserve_requests_total{"):
                continue
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:
                                                               line.index("}")].split(","))
            if labels["route"].strip('"') in MODEL_ROUTES:
                counts[labels["transport"].strip('"')] += float(line.rsplit(" ", 1)[1])
        return counts


class Haproxy:
    """haproxy in the foreground with a generated config, its admin socket, its log."""

    def __init__(self, workdir: Path, replicas: list[Replica], *, retries: bool) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise SystemExit(HAPROXY_MISSING)
        self.port = free_port()
        self.socket_path = workdir / "haproxy.sock"
        self.log_path = workdir / "haproxy.log"
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.socket_path, replicas, retries))
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.socket_path.exists() or not accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the replicas' backend: one row per server and the backend's."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "replicas"}

    def retries(self) -> tuple[int, int]:
        """(retries, redispatches) haproxy made: connections that failed before the request
        was sent, tried again (on the same replica, or on another)."""
        backend = self.stats()["BACKEND"]
        return int(backend["wretr"] or 0), int(backend["wredis"] or 0)

    def server_up(self, name: str) -> bool:
        return self.stats()[name]["status"] == "UP"

    def state_changes(self) -> list[str]:
        return [line.strip() for line in self.log_path.read_text().splitlines()
                if line.startswith("Server ") and (" is DOWN" in line or " is UP" in line)]

    def error_lines(self) -> list[str]:
        """haproxy's log line for every request answered with an error (its log also has
        the requests it retried, answered normally)."""
        return [line.strip() for line in self.log_path.read_text().splitlines()
                if " load replicas/" in line and not line.split()[5].startswith("2")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


def haproxy_config(port: int, socket_path: Path, replicas: list[Replica], retries: bool
                   ) -> str:
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.http_port} check" for r in replicas)
    retry = ("retries 3\n    option redispatch\n    retry-on conn-failure" if retries
             else "retries 0\n    retry-on none")
    return f"""\
global
    nbthread 1
    stats socket {socket_path} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal          # log only requests that did not end normally
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A connect that failed (refused, timed out) is retried up to 3 times, the last on
    # another replica; nothing else is: conn-failure is haproxy's default, written out.
    {retry}

frontend load
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""


def grpc_channel(replicas: list[Replica], health_check: bool) -> grpc.aio.Channel:
    """grpc's round_robin over every replica, skipping those whose health is not SERVING.
    Reconnect backoff capped at 1 s so a restarted replica is back within a second."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_check:
        config["healthCheckConfig"] = {"serviceName": ""}
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.grpc_port}" for r in replicas)
    return grpc.aio.insecure_channel(target, options=[
        ("grpc.service_config", json.dumps(config)),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000)])


# -- the load ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    transport: str
    kind: str
    started: float
    ended: float
    failure: str | None  # the cause, or None when the call succeeded


class Load:
    """Closed-loop workers per transport, each making one call after another: unary
    predict, streamed predict, streamed /v1 chat."""

    def __init__(self, http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        self.calls: list[Call] = []
        self._http = http
        self._predict = channel.unary_unary(
            service.method_path(service.PREDICT),
            request_serializer=PredictRequest.SerializeToString,
            response_deserializer=PredictResponse.FromString)
        self._stream = channel.unary_stream(
            service.method_path(service.PREDICT_STREAM),
            request_serializer=PredictStreamRequest.SerializeToString,
            response_deserializer=PredictStreamResponse.FromString)

    async def worker(self, transport: str, running: Callable[[], bool]) -> None:
        kinds: dict[str, Callable[[], Any]] = (
            {"unary": self._http_unary, "stream": self._http_stream, "chat": self._http_chat}
            if transport == "http" else
            {"unary": self._grpc_unary, "stream": self._grpc_stream, "chat": self._grpc_chat})
        while running():
            kind = random.choices(("unary", "stream", "chat"), (4, 4, 2))[0]
            started = time.monotonic()
            failure = None
            try:
                await kinds[kind]()
            except grpc.RpcError as exc:
                failure = f"{exc.code().name}: {exc.details()}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            except AssertionError as exc:
                failure = str(exc)
            self.calls.append(Call(transport, kind, started, time.monotonic(), failure))

    async def _http_unary(self) -> None:
        response = await self._http.post("/predict", json={"prompt": "hi", "max_tokens": 8})
        assert response.status_code == 200, f"HTTP {response.status_code}: {_short(response.text)}"
        assert response.json()["finish_reason"] == "length", response.text[:200]

    async def _http_stream(self) -> None:
        body = {"prompt": "hi", "max_tokens": 16, "stream": True}
        async with self._http.stream("POST", "/predict", json=body) as response:
            text = (await response.aread()).decode()
        assert response.status_code == 200, f"HTTP {response.status_code}: {_short(text)}"
        assert len(text.split()) == 16, f"stream cut: {text[-200:]!r}"

    async def _http_chat(self) -> None:
        body = {"model": "m", "max_tokens": 8, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
            text = (await response.aread()).decode()
        assert response.status_code == 200, f"HTTP {response.status_code}: {_short(text)}"
        assert text.rstrip().endswith("data: [DONE]"), f"chat stream cut: {text[-200:]!r}"

    async def _grpc_unary(self) -> None:
        response = await self._predict(
            PredictRequest(json=b'{"prompt": "hi", "max_tokens": 8}'), timeout=30)
        assert json.loads(response.json)["finish_reason"] == "length", response.json[:200]

    async def _grpc_stream(self) -> None:
        chunks = [chunk.text async for chunk in self._stream(PredictStreamRequest(
            json=b'{"prompt": "hi", "max_tokens": 16, "stream": true}'), timeout=30)]
        assert len("".join(chunks).split()) == 16, f"stream cut: {chunks[-3:]!r}"

    async def _grpc_chat(self) -> None:
        body = (b'{"model": "m", "max_tokens": 8, "stream": true, '
                b'"messages": [{"role": "user", "content": "hi"}]}')
        events = [json.loads(chunk.json) async for chunk in self._stream(
            PredictStreamRequest(route="chat_completions", json=body), timeout=30)]
        assert events and events[-1]["choices"][0]["finish_reason"] == "length", \
            f"chat stream cut: {events[-1:]!r}"


def _short(text: str) -> str:
    """A body as one short line, for the failure's cause."""
    return " ".join(text.split())[:160]


# -- restarts ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Restart:
    replica: str
    signalled: float
    exit_status: int
    exited: float
    ready: float
    in_rotation: float | None  # None: not back on both transports in time


def restart(replica: Replica, lb: Haproxy) -> Restart:
    signalled = time.monotonic()
    status = replica.stop_gracefully()
    exited = time.monotonic()
    replica.start_again()
    replica.wait_ready()
    ready = time.monotonic()
    deadline = ready + BACK_IN_ROTATION_S
    in_rotation = None
    while time.monotonic() < deadline:
        calls = replica.model_calls()
        if lb.server_up(replica.name) and calls["http"] > 0 and calls["grpc"] > 0:
            in_rotation = time.monotonic()
            break
        time.sleep(0.1)
    return Restart(replica.name, signalled, status, exited, ready, in_rotation)


def restart_in_turn(replicas: list[Replica], lb: Haproxy, count: int, first: float,
                    last: float, done: list[Restart]) -> None:
    """`count` restarts, replica after replica, the k-th planned at an even share of
    [first, last] and never before the previous one is back in rotation."""
    for k in range(count):
        planned = first + (last - first) * k / max(1, count - 1) if count > 1 else first
        time.sleep(max(0.0, planned - time.monotonic()))
        done.append(restart(replicas[k % len(replicas)], lb))


# -- report -----------------------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarize(calls: list[Call], restarts: list[Restart], lb_retries: tuple[int, int]
              ) -> dict[str, Any]:
    windows = [(r.signalled, r.in_rotation or r.ready) for r in restarts]

    def during(call: Call) -> bool:
        return any(call.started < end and call.ended > start for start, end in windows)

    result: dict[str, Any] = {}
    for transport in ("http", "grpc"):
        mine = [c for c in calls if c.transport == transport]
        ok = [c for c in mine if c.failure is None]
        steady = [(c.ended - c.started) * 1000 for c in ok if not during(c)]
        busy = [(c.ended - c.started) * 1000 for c in ok if during(c)]
        p99_steady, p99_busy = percentile(steady, 99), percentile(busy, 99)
        result[transport] = {
            "made": len(mine), "failed": len(mine) - len(ok),
            "failures": dict(collections.Counter(c.failure for c in mine if c.failure)),
            "made_during_restarts": sum(map(during, mine)),
            "by_kind": dict(collections.Counter(c.kind for c in mine)),
            "client_retries": 0,
            "steady_ms": {"p50": percentile(steady, 50), "p99": p99_steady},
            "restarts_ms": {"p50": percentile(busy, 50), "p99": p99_busy},
            "p99_ratio": p99_busy / p99_steady if steady and busy else float("nan"),
        }
    result["http"]["lb_retries"], result["http"]["lb_redispatches"] = lb_retries
    result["restarts"] = [{
        "replica": r.replica, "exit_status": r.exit_status,
        "exit_s": round(r.exited - r.signalled, 2),
        "ready_s": round(r.ready - r.signalled, 2),
        "in_rotation_s": None if r.in_rotation is None else round(r.in_rotation - r.signalled, 2),
    } for r in restarts]
    return result


def print_report(result: dict[str, Any], seconds: float, lb: Haproxy) -> None:
    print(f"run: {seconds:.1f} s, {len(result['restarts'])} restarts")
    for r in result["restarts"]:
        print(f"  {r['replica']}: SIGTERM -> exit {r['exit_status']} after {r['exit_s']} s, "
              f"ready after {r['ready_s']} s, back in rotation after {r['in_rotation_s']} s")
    for transport in ("http", "grpc"):
        t = result[transport]
        retried = (f"client retries 0; haproxy retries {t['lb_retries']}, redispatches "
                   f"{t['lb_redispatches']} (connect failures only)" if transport == "http"
                   else "client retries 0 (no retry policy)")
        print(f"{transport}: {t['made']} calls ({t['made_during_restarts']} during restarts), "
              f"{t['failed']} failed; {retried}")
        for cause, n in sorted(t["failures"].items(), key=lambda item: -item[1]):
            print(f"    {n} x {cause}")
        print(f"    latency ms  steady p50 {t['steady_ms']['p50']:.1f} p99 "
              f"{t['steady_ms']['p99']:.1f} | during restarts p50 {t['restarts_ms']['p50']:.1f} "
              f"p99 {t['restarts_ms']['p99']:.1f} | p99 ratio {t['p99_ratio']:.2f}")
    print("haproxy saw:")
    for line in lb.state_changes():
        print("   ", line)
    for line in lb.error_lines()[:20]:
        print("    error:", line)


def targets_met(result: dict[str, Any]) -> bool:
    restarts_ok = all(r["exit_status"] == 0 and r["in_rotation_s"] is not None
                      for r in result["restarts"])
    no_failures = all(result[t]["failed"] == 0 for t in ("http", "grpc"))
    latency_ok = all(result[t]["p99_ratio"] <= 2.0 for t in ("http", "grpc"))
    print(f"targets: zero failed calls {'met' if no_failures else 'MISSED'}; p99 during "
          f"restarts within 2x steady {'met' if latency_ok else 'MISSED'}; every drain exit 0 "
          f"and back in rotation {'met' if restarts_ok else 'MISSED'}")
    return restarts_ok and no_failures and latency_ok


# -- main -------------------------------------------------------------------------------------


async def drive(replicas: list[Replica], lb: Haproxy, args: argparse.Namespace
                ) -> tuple[list[Call], list[Restart], float]:
    restarts: list[Restart] = []
    began = time.monotonic()
    lead: float = max(3.0, args.seconds * 0.15)  # steady load before the first restart and after
    first, last = began + lead, began + args.seconds - lead - 10
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{lb.port}", limits=limits,
                                 timeout=30) as http:
        channel = grpc_channel(replicas, health_check=not args.no_grpc_health_check)
        load = Load(http, channel)
        until: float = began + args.seconds
        thread = threading.Thread(target=restart_in_turn, daemon=True,
                                  args=(replicas, lb, args.restarts, first, max(first, last),
                                        restarts))
        thread.start()

        restarts_done = [0.0]  # when the last restart was back in rotation

        def running() -> bool:
            """For --seconds, and for `lead` past the last restart at least."""
            if thread.is_alive():
                return True
            restarts_done[0] = restarts_done[0] or time.monotonic()
            return time.monotonic() < max(until, restarts_done[0] + lead)

        await asyncio.gather(*(load.worker(t, running) for t in ("http", "grpc")
                               for _ in range(args.concurrency)))
        await channel.close()
    thread.join()
    return load.calls, restarts, time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=90, help="load duration (at least)")
    parser.add_argument("--restarts", type=int, default=None,
                        help="restarts in all, replica after replica (default: each twice)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="callers per transport, each one call after another")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--no-lb-retries", action="store_true",
                        help="haproxy retries nothing, not even a refused connect (to see "
                             "what the drain's grace alone does)")
    parser.add_argument("--no-grpc-health-check", action="store_true",
                        help="the gRPC channel balances over connected replicas without "
                             "watching their health")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.restarts is None:
        args.restarts = 2 * args.replicas
    with tempfile.TemporaryDirectory(prefix="rolling-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = workdir / "model"
            model_dir.mkdir()
            (model_dir / "config.yaml").write_text(MODEL_CONFIG)
        replicas = [Replica(f"r{i}", model_dir.resolve()) for i in range(args.replicas)]
        lb = None
        try:
            for replica in replicas:
                replica.wait_ready()
            lb = Haproxy(workdir, replicas, retries=not args.no_lb_retries)
            retries_before = lb.retries()
            calls, restarts, seconds = asyncio.run(drive(replicas, lb, args))
            retries_after = lb.retries()
            result = summarize(calls, restarts, (retries_after[0] - retries_before[0],
                                                 retries_after[1] - retries_before[1]))
            print_report(result, seconds, lb)
        finally:
            for replica in replicas:
                replica.daemon.stop()
            if lb is not None:
                lb.stop()
    result["seconds"] = round(seconds, 1)
    result["targets_met"] = targets_met(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
