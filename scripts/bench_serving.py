"""Serving benchmark, in the manner of vLLM's `bench serve`: streamed completions at set
concurrency levels, fixed prompt and output lengths, over HTTP or gRPC.

For each level it keeps `concurrency` streams open until `concurrency * waves` requests are
done, and reports output tokens/s (counted from `usage`, not from chunks), requests/s, time
to first token and inter-token latency (p50/p99). With `--ceiling` it also runs, in this
process and in the same invocation, transformers' own continuous batching on the same
prompts (greedy, no processors: the library at its fastest, with the model directory's
`engine:` settings) and prints the daemon's ratio to it, level by level, alternating the
two so machine noise hits both alike. With `--memory N` it then sends N mixed requests
(lengths, greedy and sampled, one in four abandoned mid-stream) and reports the daemon's
resident memory after the first 100 and after all N.

With `--peer vllm` it starts two servers on the embedded model's weights, with the same engine
settings (float32, eager, 2048-token context, 1 GiB KV cache, `--max-batch-size`) and the
same environment: vLLM's own OpenAI server and a daemon with `engine: {backend: vllm}`. It
sends both the same streamed /v1/completions over HTTP, alternating which goes first level by
level and round by round, and prints the daemon's ratios to vLLM: output tokens/s, and TTFT
p50 as +x%. Run it with the interpreter that has vLLM (scripts/install.sh --vllm).

    python scripts/bench_serving.py                        # embedded model, HTTP, 1 4 16 32
    python scripts/bench_serving.py --transport grpc --levels 1 16 --ceiling
    python scripts/bench_serving.py --levels 16 --memory 1000
    python scripts/bench_serving.py --url http://host:8080 # a daemon already running
    .venv-vllm/bin/python scripts/bench_serving.py --peer vllm --levels 1 16 --waves 12 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients import AsyncGrpcClient, AsyncHttpClient  # noqa: E402
from daemon.config import EngineConfig, load_model_config  # noqa: E402
from daemon.cli import BUILTIN_LLM_DIR  # noqa: E402
from scripts.vllm_peer import (  # noqa: E402
    VllmServer,
    cpu_binding,
    cpu_environment,
    peer_engine,
    write_model_dir,
)
from tests.harness import REPO, DaemonProcess, rss_mib  # noqa: E402

WORDS = ("river", "stone", "light", "garden", "market", "winter", "signal", "harbor")


@dataclasses.dataclass
class Level:
    concurrency: int
    tokens: int = 0
    requests: int = 0
    elapsed: float = 0.0
    ttft: list[float] = dataclasses.field(default_factory=list)
    itl: list[float] = dataclasses.field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed if self.elapsed else 0.0

    def add(self, other: Level) -> None:
        """`other`'s run counted in this one, as one longer run."""
        self.tokens += other.tokens
        self.requests += other.requests
        self.elapsed += other.elapsed
        self.ttft += other.ttft
        self.itl += other.itl


def prompts(count: int, input_len: int) -> list[str]:
    """Distinct prompts of about `input_len` tokens (one word is one token in SmolLM2)."""
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(input_len - 1)) + f" {i}"
            for i in range(count)]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- the daemon, through the client library ---------------------------------------------------

async def one_stream(client: Any, prompt: str, output_len: int, level: Level,
                     ignore_eos: bool = True) -> None:
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": output_len, "temperature": 0,
                            "stream_options": {"include_usage": True}}
    if ignore_eos:  # vLLM's extension; leave it out for a server that lacks it
        body["ignore_eos"] = True
    start = last = time.perf_counter()
    first = True
    usage = None
    async for event in client.completions_stream(body):
        now = time.perf_counter()
        if event.get("usage"):
            usage = event["usage"]
        if any(choice.get("text") for choice in event.get("choices", ())):
            if first:
                level.ttft.append(now - start)
                first = False
            else:
                level.itl.append(now - last)
            last = now
    if usage is None:
        raise RuntimeError("the stream ended without usage")
    level.tokens += int(usage["completion_tokens"])
    level.requests += 1


async def run_daemon_level(client: Any, texts: list[str], concurrency: int, waves: int,
                           output_len: int, ignore_eos: bool = True) -> Level:
    level = Level(concurrency)
    todo = list(texts[: concurrency * waves])
    start = time.perf_counter()

    async def worker() -> None:
        while todo:
            await one_stream(client, todo.pop(), output_len, level, ignore_eos)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    level.elapsed = time.perf_counter() - start
    return level


# -- the ceiling: transformers' continuous batching in this process ---------------------------

class Ceiling:
    """The library on its own: same weights, dtype, cache and batch limits as the daemon, and
    torch's own thread count (one per CPU), as the daemon's engine has unless engine.threads
    sets another."""

    def __init__(self, engine: EngineConfig) -> None:
        from daemon.config import default_cache_dir
        from daemon.engine.backends import build_backend
        from daemon.engine.hf import HfBackend

        backend = build_backend(engine, default_cache_dir(os.environ))  # as the daemon does
        if not isinstance(backend, HfBackend):
            raise SystemExit("--ceiling needs a model directory with an hf engine")
        self._backend = backend
        self._loaded: Any = None
        self._manager: Any = None
        self._count = 0

    def start(self) -> None:
        from daemon.engine import hf_engine

        settings = self._backend.engine_settings()
        self._loaded = hf_engine.load(settings)  # the engine's own loading: weights, dtype
        self._manager = hf_engine.new_manager(self._loaded, settings)  # without our processors
        self._manager.start()

    def stop(self) -> None:
        self._manager.stop(block=True, timeout=30)

    async def run_level(self, texts: list[str], concurrency: int, waves: int,
                        output_len: int) -> Level:
        level = Level(concurrency)
        todo = list(texts[: concurrency * waves])
        loop = asyncio.get_running_loop()
        start = time.perf_counter()

        async def one(prompt: str) -> None:
            self._count += 1
            request_id = f"ceiling-{self._count}"
            outputs: asyncio.Queue[Any] = asyncio.Queue()
            self._manager.register_result_handler(request_id, outputs.put_nowait)
            begun = last = loop.time()
            self._manager.add_request(self._loaded.tokenizer(prompt).input_ids,
                                      request_id=request_id,
                                      max_new_tokens=output_len, streaming=True,
                                      eos_token_id=-1)
            seen = 0
            while True:
                output = await outputs.get()
                now = loop.time()
                if len(output.generated_tokens) > seen:
                    if seen == 0:
                        level.ttft.append(now - begun)
                    else:
                        level.itl.append(now - last)
                    last = now
                    seen = len(output.generated_tokens)
                if output.is_finished():
                    level.tokens += len(output.generated_tokens)
                    level.requests += 1
                    return

        async def worker() -> None:
            while todo:
                await one(todo.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        level.elapsed = time.perf_counter() - start
        return level


# -- report -------------------------------------------------------------------------------------

def row(name: str, level: Level) -> str:
    return (f"{name:8} {level.concurrency:>4} {level.tokens_per_s:>9.1f} "
            f"{level.requests / level.elapsed:>7.2f} "
            f"{percentile(level.ttft, 50) * 1000:>8.0f} {percentile(level.ttft, 99) * 1000:>8.0f} "
            f"{percentile(level.itl, 50) * 1000:>7.1f} {percentile(level.itl, 99) * 1000:>7.1f}")


HEADER = ("side     conc  tokens/s   req/s  TTFTp50  TTFTp99  ITLp50  ITLp99   (ms)")


async def memory_soak(client: Any, texts: list[str], total: int, pid: int | None) -> None:
    """`total` mixed requests, 16 at a time; the RSS of the daemon and its
    engine process after 100 and after all."""
    if pid is None:
        raise SystemExit("--memory needs the daemon this script starts (no --url)")
    done = 0
    after_100 = 0.0

    async def one(index: int) -> None:
        body: dict[str, Any] = {"prompt": texts[index % len(texts)],
                                "max_tokens": 8 + index % 40, "ignore_eos": index % 3 == 0,
                                "temperature": 0 if index % 2 else 0.8, "seed": index}
        stream = client.completions_stream(body)
        try:
            async for event in stream:
                if index % 4 == 0 and event.get("choices"):
                    break  # abandon it mid-stream: the daemon cancels the generation
        finally:
            await stream.aclose()

    async def worker(start: int) -> None:
        nonlocal done, after_100
        for index in range(start, total, 16):
            await one(index)
            done += 1
            if done == 100:
                after_100 = rss_mib(pid)

    await asyncio.gather(*(worker(i) for i in range(16)))
    await asyncio.sleep(1)  # the last cancels reach the engine
    final = rss_mib(pid)
    print(f"memory: RSS after 100 requests {after_100:.1f} MiB, after {total} "
          f"{final:.1f} MiB ({final - after_100:+.1f} MiB)")


async def bench(args: argparse.Namespace, url: str, grpc_target: str,
                pid: int | None = None) -> None:
    texts = prompts(max(args.levels) * args.waves + 8, args.input_len)
    client: Any = (AsyncGrpcClient(grpc_target, timeout=600) if args.transport == "grpc"
                   else AsyncHttpClient(url, timeout=600))
    ceiling = None
    if args.ceiling:
        engine = load_model_config(args.model_dir or BUILTIN_LLM_DIR).engine
        if engine is None:
            raise SystemExit("--ceiling needs a model directory with an engine: section")
        ceiling = Ceiling(engine)
        await asyncio.to_thread(ceiling.start)
    results: list[dict[str, Any]] = []
    try:
        # Warm-up, both sides: the first steps of a fresh batch shape are slower.
        await run_daemon_level(client, texts, 2, 1, 8, args.ignore_eos)
        if ceiling is not None:
            await ceiling.run_level(texts, 2, 1, 8)
        print(f"transport={args.transport} input_len~{args.input_len} "
              f"output_len={args.output_len} waves={args.waves}")
        print(HEADER)
        one_stream_rate = None
        for concurrency in args.levels:
            daemon = await run_daemon_level(client, texts, concurrency, args.waves,
                                            args.output_len, args.ignore_eos)
            print(row("daemon", daemon), flush=True)
            if one_stream_rate is None and concurrency == 1:
                one_stream_rate = daemon.tokens_per_s
            entry: dict[str, Any] = {"concurrency": concurrency,
                                     "daemon_tokens_per_s": daemon.tokens_per_s,
                                     "daemon_ttft_p99_s": percentile(daemon.ttft, 99)}
            if ceiling is not None:
                lib = await ceiling.run_level(texts, concurrency, args.waves, args.output_len)
                print(row("ceiling", lib), flush=True)
                ratio = daemon.tokens_per_s / lib.tokens_per_s
                print(f"{'':8} {'':>4} daemon/ceiling = {ratio:.2f}x", flush=True)
                entry["ceiling_tokens_per_s"] = lib.tokens_per_s
                entry["ratio_to_ceiling"] = ratio
            if one_stream_rate:
                entry["x_one_stream"] = daemon.tokens_per_s / one_stream_rate
            results.append(entry)
        if one_stream_rate:
            scaling = ", ".join(f"{e['concurrency']}: {e['x_one_stream']:.1f}x" for e in results)
            print(f"daemon tokens/s against 1 stream: {scaling}")
        if args.json:
            print(json.dumps(results))
        if args.memory:
            await memory_soak(client, texts, args.memory, pid)
    finally:
        await client.close()
        if ceiling is not None:
            await asyncio.to_thread(ceiling.stop)


SIDES = ("vllm", "daemon")
# The targets, by concurrency: the daemon's tokens/s at least this share of vLLM's,
# and its TTFT p50 at most this much above vLLM's (None: no TTFT target).
TARGETS: dict[int, tuple[float, float | None]] = {1: (0.95, None), 16: (1.0, 0.10)}


def comparison(daemon: Level, peer: Level) -> str:
    ttft_daemon, ttft_peer = percentile(daemon.ttft, 50), percentile(peer.ttft, 50)
    return (f"daemon/vllm = {daemon.tokens_per_s / peer.tokens_per_s:.2f}x tokens/s, "
            f"TTFT p50 {(ttft_daemon / ttft_peer - 1) * 100:+.0f}%")


def target_note(daemon: Level, peer: Level) -> str:
    if daemon.concurrency not in TARGETS:
        return ""
    min_ratio, max_ttft = TARGETS[daemon.concurrency]
    ratio = daemon.tokens_per_s / peer.tokens_per_s
    ttft = percentile(daemon.ttft, 50) / percentile(peer.ttft, 50) - 1
    met = ratio >= min_ratio and (max_ttft is None or ttft <= max_ttft)
    wanted = f">= {min_ratio:.2f}x" + ("" if max_ttft is None else f", TTFT <= +{max_ttft:.0%}")
    return f"{'met' if met else 'MISSED'} ({wanted})"


def both_ms(daemon: float, peer: float, digits: int = 0) -> str:
    return f"{daemon * 1000:.{digits}f} / {peer * 1000:.{digits}f}"


def peer_summary(totals: Mapping[tuple[str, int], Level], levels: Sequence[int],
                 rounds: int) -> list[dict[str, Any]]:
    print(f"all {rounds} round(s) together; latencies daemon / vllm, in ms:")
    print(f"{'conc':>4} {'daemon tok/s':>13} {'vllm tok/s':>11} {'ratio':>6} {'TTFT p50':>11} "
          f"{'':>5} {'TTFT p99':>14} {'ITL p50':>13}  target")
    results: list[dict[str, Any]] = []
    for concurrency in levels:
        daemon, peer = totals["daemon", concurrency], totals["vllm", concurrency]
        ratio = daemon.tokens_per_s / peer.tokens_per_s
        ttft = percentile(daemon.ttft, 50) / percentile(peer.ttft, 50) - 1
        ttft_p50 = both_ms(percentile(daemon.ttft, 50), percentile(peer.ttft, 50))
        ttft_p99 = both_ms(percentile(daemon.ttft, 99), percentile(peer.ttft, 99))
        itl_p50 = both_ms(percentile(daemon.itl, 50), percentile(peer.itl, 50), 1)
        line = (f"{concurrency:>4} {daemon.tokens_per_s:>13.1f} {peer.tokens_per_s:>11.1f} "
                f"{ratio:>5.2f}x {ttft_p50:>11} {ttft * 100:+4.0f}% {ttft_p99:>14} "
                f"{itl_p50:>13}  {target_note(daemon, peer)}")
        print(line.rstrip())
        results.append({"concurrency": concurrency,
                        "daemon_tokens_per_s": daemon.tokens_per_s,
                        "vllm_tokens_per_s": peer.tokens_per_s, "ratio": ratio,
                        "daemon_ttft_p50_s": percentile(daemon.ttft, 50),
                        "vllm_ttft_p50_s": percentile(peer.ttft, 50),
                        "daemon_ttft_p99_s": percentile(daemon.ttft, 99),
                        "vllm_ttft_p99_s": percentile(peer.ttft, 99),
                        "daemon_itl_p50_s": percentile(daemon.itl, 50),
                        "vllm_itl_p50_s": percentile(peer.itl, 50)})
    return results


async def bench_peer(args: argparse.Namespace, urls: Mapping[str, str]) -> None:
    """The same load on both servers, one at a time: which side goes first alternates level
    by level and round by round, so a slower stretch of the machine hits both."""
    texts = prompts(max(args.levels) * args.waves + 8, args.input_len)
    clients = {side: AsyncHttpClient(urls[side], timeout=600) for side in SIDES}
    totals = {(side, concurrency): Level(concurrency)
              for side in SIDES for concurrency in args.levels}
    try:
        for side in SIDES:  # warm-up: the first steps of a fresh batch shape are slower
            await run_daemon_level(clients[side], texts, 2, 1, 8, args.ignore_eos)
        print(f"transport=http input_len~{args.input_len} output_len={args.output_len} "
              f"waves={args.waves} rounds={args.rounds}")
        print(HEADER)
        for round_index in range(args.rounds):
            for level_index, concurrency in enumerate(args.levels):
                first_peer = (round_index + level_index) % 2 == 0
                measured: dict[str, Level] = {}
                for side in SIDES if first_peer else SIDES[::-1]:
                    measured[side] = await run_daemon_level(
                        clients[side], texts, concurrency, args.waves, args.output_len,
                        args.ignore_eos)
                    print(row(side, measured[side]), flush=True)
                    totals[side, concurrency].add(measured[side])
                print(f"{'':8} {'':>4} {comparison(measured['daemon'], measured['vllm'])}",
                      flush=True)
        results = peer_summary(totals, args.levels, args.rounds)
        if args.json:
            print(json.dumps(results))
    finally:
        for client in clients.values():
            await client.close()


def run_with_peer(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("vllm") is None:
        raise SystemExit(f"--peer vllm: {sys.executable} cannot import vllm; run this script "
                         "with .venv-vllm/bin/python (scripts/install.sh --vllm)")
    engine = peer_engine(args.max_batch_size)
    # One environment for both servers, the daemon's own additions included.
    extra = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    env = {**os.environ, **extra}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        model_dir = write_model_dir(Path(tmp), engine)
        served_name = load_model_config(model_dir).model_name
        # Both start at once (start-up is not measured); idle, each takes next to no CPU.
        with VllmServer(engine, served_name=served_name, env=env,
                        log_path=Path(tmp) / "vllm.log") as peer, \
                DaemonProcess(model_dir, env=extra) as daemon:
            peer.wait_ready(timeout=600)
            daemon.wait_ready(timeout=600)
            print(f"engine, both servers: {engine.model} dtype={engine.dtype} "
                  f"enforce_eager={engine.enforce_eager} max_model_len={engine.max_model_len} "
                  f"kv_cache={engine.kv_cache_mib} MiB max_batch={engine.max_batch_size}")
            print(f"environment, both servers: {cpu_environment(env)}")
            print(f"CPUs: daemon {cpu_binding(daemon.log_lines)}; "
                  f"vllm {cpu_binding(peer.log_lines)} (of {os.cpu_count()})")
            asyncio.run(bench_peer(args, {"daemon": daemon.http_url, "vllm": peer.url}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running daemon's HTTP URL (default: start one)")
    parser.add_argument("--grpc", help="its gRPC host:port, with --url and --transport grpc")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model directory to serve (default: the embedded model)")
    parser.add_argument("--transport", choices=("http", "grpc"), default="http")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--waves", type=int, default=2,
                        help="requests per level = concurrency x waves")
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=48)
    parser.add_argument("--ceiling", action="store_true",
                        help="also run transformers' continuous batching in process, with "
                             "the model directory's engine settings")
    parser.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                        help="leave out vLLM's ignore_eos (for servers without it)")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="then send N mixed requests and report the RSS of the daemon and"
                             " its engine process")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--peer", choices=("vllm",), default=None,
                        help="also start vLLM's own server and compare a daemon with the vllm "
                             "backend to it, same weights and engine settings")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --peer: times each level runs on each side, alternating")
    parser.add_argument("--max-batch-size", type=int, default=32,
                        help="with --peer: sequences a step, on both sides")
    args = parser.parse_args()
    if args.peer:
        conflicts = [flag for flag, given in (("--url", args.url), ("--model-dir", args.model_dir),
                                              ("--ceiling", args.ceiling),
                                              ("--memory", args.memory),
                                              ("--transport grpc", args.transport == "grpc"))
                     if given]
        if conflicts:
            parser.error(f"--peer starts both servers itself, over HTTP: leave out "
                         f"{', '.join(conflicts)}")
        run_with_peer(args)
        return
    if args.url:
        asyncio.run(bench(args, args.url, args.grpc or ""))
        return
    with DaemonProcess(args.model_dir, env={"PYTHONWARNINGS": "ignore"}) as daemon:
        daemon.wait_ready(timeout=600)
        asyncio.run(bench(args, daemon.http_url, f"127.0.0.1:{daemon.grpc_port}",
                          daemon.proc.pid))


if __name__ == "__main__":
    main()
