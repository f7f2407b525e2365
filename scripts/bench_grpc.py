"""Benchmark the daemon's gRPC front end against a bare grpc.aio servicer, as a ratio.

    python scripts/bench_grpc.py [--rounds 6] [--duration 4] [--connections 16]

Both servers serve the same proto and do the same work: unary Predict echoes a ~100-byte
JSON body, PredictStream sends 100 JSON chunks. The daemon runs a temporary model that does
exactly that. Both servers are pinned to CPU 0 (taskset) and h2load, posting a pre-framed
gRPC body, to CPU 1; runs alternate bare/daemon in one session because these machines are
noisy. h2load does not read grpc-status, so each server's answers are checked once first.
The daemon's access log is off unless --access-log, as the bare servicer writes none.

    python scripts/bench_grpc.py --bare-server PORT   (internal: run the bare servicer)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clients import GrpcClient  # noqa: E402
from tests.harness import start_pinned  # noqa: E402
from twinserve_wire import service  # noqa: E402
from twinserve_wire.proto.v1.model_pb2 import (  # noqa: E402
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)

STREAM_CHUNKS = 100
BODY = {"text": "x" * 84}  # 100 bytes of JSON
MODEL = '''
import asyncio

class Model:
    async def predict(self, model_input):
        if isinstance(model_input, dict) and "stream" in model_input:
            return self._stream(model_input["stream"])
        return model_input

    async def _stream(self, n):
        for i in range(n):
            yield {"i": i}
'''


# -- the bare servicer ----------------------------------------------------------------------


async def _bare_predict(request: PredictRequest, context: Any) -> PredictResponse:
    return PredictResponse(json=request.json)


async def _bare_stream(request: PredictStreamRequest, context: Any) -> None:
    n = orjson.loads(request.json)["stream"]
    for i in range(n):
        await context.write(PredictStreamResponse(json=orjson.dumps({"i": i})))


async def _serve_bare(port: int) -> None:
    server = grpc.aio.server()
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        service.PREDICT: grpc.unary_unary_rpc_method_handler(
            _bare_predict, PredictRequest.FromString, PredictResponse.SerializeToString),
        service.PREDICT_STREAM: grpc.unary_stream_rpc_method_handler(
            _bare_stream, PredictStreamRequest.FromString, PredictStreamResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(service.SERVICE_NAME, handlers)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"bare grpc=127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


# -- driving ----------------------------------------------------------------------------------


def _framed(message: bytes) -> bytes:
    """One gRPC length-prefixed message: flag byte 0 (uncompressed), big-endian length."""
    return struct.pack(">BI", 0, len(message)) + message


def _h2load(port: int, method: str, body_file: Path, args: argparse.Namespace) -> float:
    cmd = ["taskset", "-c", "1", "h2load", "-c", str(args.connections), "-m", "1", "-t", "1",
           "-D", str(args.duration), "--warm-up-time", "1", "-d", str(body_file),
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://127.0.0.1:{port}{service.method_path(method)}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    failed = re.search(r"(\d+) failed, (\d+) errored", out)
    if failed is None or failed.group(1) != "0" or failed.group(2) != "0":
        raise RuntimeError(f"h2load saw failures:\n{out}")
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    assert rate is not None, out
    return float(rate.group(1))


def _check(port: int) -> None:
    with GrpcClient(f"127.0.0.1:{port}", timeout=10) as client:
        assert client.predict(BODY) == BODY
        chunks = list(client.predict_stream({"stream": STREAM_CHUNKS}))
        assert chunks == [{"i": i} for i in range(STREAM_CHUNKS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--access-log", action="store_true",
                        help="keep the daemon's access log on (default: off, as the bare "
                        "servicer writes none)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server is not None:
        import uvloop  # the daemon runs on uvloop too

        uvloop.install()
        asyncio.run(_serve_bare(args.bare_server))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "bench"
        (model_dir / "model").mkdir(parents=True)
        (model_dir / "model" / "model.py").write_text(MODEL)
        access_log = "true" if args.access_log else "false"
        (model_dir / "config.yaml").write_text(
            "model_name: bench\nruntime:\n  predict_concurrency: 64\n"
            f"server:\n  access_log: {access_log}\n")
        unary_body = Path(tmp) / "unary.bin"
        unary_body.write_bytes(_framed(PredictRequest(json=orjson.dumps(BODY)).SerializeToString()))
        stream_body = Path(tmp) / "stream.bin"
        stream_body.write_bytes(_framed(PredictStreamRequest(
            json=orjson.dumps({"stream": STREAM_CHUNKS})).SerializeToString()))

        daemon, daemon_listening = start_pinned(
            [sys.executable, "-m", "daemon", "serve", str(model_dir), "--http-port", "0",
             "--grpc-port", "0"], r"listening .*grpc=\S+:(\d+)")
        bare, bare_listening = start_pinned([sys.executable, __file__, "--bare-server", "0"],
                                 r"bare grpc=\S+:(\d+)")
        daemon_port, bare_port = int(daemon_listening.group(1)), int(bare_listening.group(1))
        # The daemon logs "listening" before the model loads: wait until it answers.
        time.sleep(1.0)
        try:
            _check(daemon_port)
            _check(bare_port)
            results: dict[str, list[float]] = {}
            for round_no in range(1, args.rounds + 1):
                for name, method, body in (("unary", service.PREDICT, unary_body),
                                           ("stream", service.PREDICT_STREAM, stream_body)):
                    # Swap who goes first each round, so drift in machine load cancels out.
                    pair = [("bare", bare_port), ("daemon", daemon_port)]
                    for server, port in pair if round_no % 2 else pair[::-1]:
                        rate = _h2load(port, method, body, args)
                        results.setdefault(f"{name} {server}", []).append(rate)
                        print(f"round {round_no} {name:6} {server:6} {rate:9.1f} /s", flush=True)
        finally:
            for proc in (daemon, bare):
                proc.terminate()
                proc.wait(30)
    print()
    for name in ("unary", "stream"):
        bare_rates, daemon_rates = results[f"{name} bare"], results[f"{name} daemon"]
        ratios = [d / b for d, b in zip(daemon_rates, bare_rates)]
        unit = "calls/s" if name == "unary" else "streams/s"
        print(f"{name:6}: bare {statistics.median(bare_rates):8.1f} {unit}, daemon "
              f"{statistics.median(daemon_rates):8.1f} {unit}, ratio "
              f"{statistics.median(ratios):.2f} (median of {args.rounds} same-round ratios; "
              f"range {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
