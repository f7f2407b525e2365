"""Benchmark uploads: a 10 MiB protobuf body over HTTP and gRPC, the same batch as JSON, and a
bare aiohttp handler reading the same body, in one run.

    python scripts/bench_upload.py [--rounds 5] [--calls 4] [--mib 10]

The payload is a twinserve.v1.TensorBatch (proto/twinserve/v1/tensors.proto) of float32
tensors, sent through the client library (`predict_raw`) to examples/protobuf-upload, which
decodes it and answers per-tensor stats; the JSON rows send the same batch as
application/json to the same model. The "read only" rows send the protobuf bytes to a model
that only iterates `request.stream()`, so they show the transport alone; the bare aiohttp
handler does the same work (iterates `request.content` counting bytes) and nothing else.
Servers run pinned to CPU 0, this process (the client) to CPU 1; cases alternate within each
round because these machines are noisy, and the ratios compare figures taken in the same
round.

MB/s is body bytes on the wire (10^6 bytes) per second of a call, sequential calls, one
connection. "tensor MB/s" divides the protobuf size instead, so JSON and protobuf compare
on the data they carry.

    python scripts/bench_upload.py --bare-server PORT   (internal: run the bare handler)
"""

from __future__ import annotations

import argparse
import array
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clients import GrpcClient, HttpClient, RawResponse  # noqa: E402
from tests.harness import start_pinned  # noqa: E402
from twinserve_wire.proto.v1.tensors_pb2 import (  # noqa: E402
    Tensor,
    TensorBatch,
    TensorBatchStats,
)

MiB = 1024 * 1024
PROTOBUF = "application/x-protobuf"
PIECE = 1 * MiB  # upload piece size: one chunk / one Upload message
READ_ONLY_MODEL = '''
from daemon import Request


class Model:
    async def predict(self, request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"bytes": size}
'''


# -- the bare handler -------------------------------------------------------------------------


async def _bare_read(request: web.Request) -> web.Response:
    """The read-only model's work with nothing around it: count the body as it arrives."""
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response({"bytes": size})


async def _serve_bare(port: int) -> None:
    app = web.Application(client_max_size=256 * MiB)
    app.router.add_post("/predict", _bare_read)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"bare http=127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


# -- payload ----------------------------------------------------------------------------------


def make_batch(total_mib: int) -> TensorBatch:
    """Float32 tensors whose protobuf encoding is about `total_mib` MiB."""
    rng = random.Random(6)
    count = total_mib * MiB // 4 // 4  # four tensors of float32
    batch = TensorBatch(metadata={"source": "bench_upload"})
    for i in range(4):
        values = array.array("f", (rng.uniform(-1, 1) for _ in range(count)))
        batch.tensors.append(Tensor(name=f"t{i}", shape=[count // 1024, 1024],
                                    values=values.tolist()))
    return batch


def as_json(batch: TensorBatch) -> bytes:
    return orjson.dumps({
        "tensors": [{"name": t.name, "shape": list(t.shape), "values": list(t.values)}
                    for t in batch.tensors],
        "metadata": dict(batch.metadata),
    })


def pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), PIECE):
        yield bytes(view[start:start + PIECE])


# -- servers ----------------------------------------------------------------------------------


def _daemon(model_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc, match = start_pinned([sys.executable, "-m", "daemon", "serve", str(model_dir),
                          "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"],
                         r"listening http=(\S+):(\d+) grpc=(\S+):(\d+)")
    return proc, f"http://127.0.0.1:{match.group(2)}", f"127.0.0.1:{match.group(4)}"


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    with HttpClient(url) as client:
        while time.monotonic() < deadline:
            try:
                client.predict_raw(b"", content_type="application/x-probe")
            except Exception as exc:  # noqa: BLE001 - any answer but "not ready" will do
                if "UNAVAILABLE" not in str(exc):
                    return
            else:
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


# -- measuring --------------------------------------------------------------------------------

Call = Callable[[], RawResponse]


def _timed(call: Call, calls: int) -> float:
    """Median seconds per call over `calls` sequential calls."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4, help="calls per case per round")
    parser.add_argument("--mib", type=int, default=10, help="protobuf body size")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server is not None:
        import uvloop  # the daemon runs on uvloop too

        uvloop.install()
        asyncio.run(_serve_bare(args.bare_server))
        return 0

    os.sched_setaffinity(0, {1})
    batch = make_batch(args.mib)
    proto_body = batch.SerializeToString()
    json_body = as_json(batch)
    expected = TensorBatchStats()
    print(f"protobuf body {len(proto_body) / 1e6:.1f} MB, same batch as JSON "
          f"{len(json_body) / 1e6:.1f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        read_only = Path(tmp) / "read_only"
        (read_only / "model").mkdir(parents=True)
        (read_only / "model" / "model.py").write_text(READ_ONLY_MODEL)
        (read_only / "config.yaml").write_text(
            f"model_name: read_only\nruntime:\n  max_request_bytes: {256 * MiB}\n")
        example = Path(tmp) / "tensors"
        (example / "model").mkdir(parents=True)
        (example / "model" / "model.py").write_text(
            (REPO / "examples/protobuf-upload/model/model.py").read_text())
        (example / "config.yaml").write_text(
            f"model_name: tensors\nruntime:\n  max_request_bytes: {256 * MiB}\n")

        procs = []
        try:
            ex_proc, ex_http, ex_grpc = _daemon(example)
            ro_proc, ro_http, ro_grpc = _daemon(read_only)
            bare_proc, bare_match = start_pinned([sys.executable, __file__, "--bare-server", "0"],
                                           r"bare http=\S+:(\d+)")
            procs = [ex_proc, ro_proc, bare_proc]
            bare_url = f"http://127.0.0.1:{bare_match.group(1)}"
            for url in (ex_http, ro_http):
                _wait_ready(url)
            h, g = HttpClient(ex_http, timeout=120), GrpcClient(ex_grpc, timeout=120)
            rh, rg = HttpClient(ro_http, timeout=120), GrpcClient(ro_grpc, timeout=120)
            bare = HttpClient(bare_url, timeout=120)
            clients: list[HttpClient | GrpcClient] = [h, g, rh, rg, bare]
            cases: list[tuple[str, int, Call]] = [
                ("bare aiohttp, read body", len(proto_body),
                 lambda: bare.predict_raw(proto_body, content_type=PROTOBUF)),
                ("daemon read only, HTTP", len(proto_body),
                 lambda: rh.predict_raw(proto_body, content_type=PROTOBUF)),
                ("daemon read only, gRPC Invoke", len(proto_body),
                 lambda: rg.predict_raw(proto_body, content_type=PROTOBUF)),
                ("daemon read only, HTTP chunked", len(proto_body),
                 lambda: rh.predict_raw(pieces(proto_body), content_type=PROTOBUF)),
                ("daemon read only, gRPC Upload", len(proto_body),
                 lambda: rg.predict_raw(pieces(proto_body), content_type=PROTOBUF)),
                ("example protobuf, HTTP", len(proto_body),
                 lambda: h.predict_raw(proto_body, content_type=PROTOBUF)),
                ("example protobuf, gRPC Invoke", len(proto_body),
                 lambda: g.predict_raw(proto_body, content_type=PROTOBUF)),
                ("example protobuf, gRPC Upload", len(proto_body),
                 lambda: g.predict_raw(pieces(proto_body), content_type=PROTOBUF)),
                ("example JSON, HTTP", len(json_body),
                 lambda: h.predict_raw(json_body, content_type="application/json")),
                ("example JSON, gRPC Invoke", len(json_body),
                 lambda: g.predict_raw(json_body, content_type="application/json")),
            ]
            # Check every case answers as it should before timing anything.
            for name, size, call in cases:
                answer = call()
                if answer.content_type == PROTOBUF:
                    expected = TensorBatchStats.FromString(answer.data)
                    assert len(expected.tensors) == 4, name
                else:
                    got = orjson.loads(answer.data)
                    assert got.get("bytes", size) == size or len(got["tensors"]) == 4, name
            seconds: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for round_no in range(1, args.rounds + 1):
                order = cases if round_no % 2 else cases[::-1]
                for name, size, call in order:
                    seconds[name].append(_timed(call, args.calls))
                print(f"round {round_no}: " + ", ".join(
                    f"{seconds[name][-1] * 1000:.0f}" for name, _, _ in cases) + " ms",
                    flush=True)
            for client in clients:
                client.close()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)

    bare_name = cases[0][0]
    print()
    print(f"{'case':34} {'ms/call':>8} {'MB/s':>8} {'tensor MB/s':>12} {'x bare':>7}")
    for name, size, _ in cases:
        median_s = statistics.median(seconds[name])
        ratio = statistics.median(b / s for b, s in zip(seconds[bare_name], seconds[name]))
        print(f"{name:34} {median_s * 1000:8.1f} {size / 1e6 / median_s:8.1f} "
              f"{len(proto_body) / 1e6 / median_s:12.1f} {ratio:7.2f}")
    print(f"\n(median of {args.rounds} rounds x {args.calls} calls; 'x bare' is the median "
          "same-round throughput ratio to the bare aiohttp handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
