"""The `twinserve` command. Flags and environment are read here and in config.py only."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import logs
from daemon.config import ServerConfig, from_cli
from daemon.errors import ModelDefinitionError

log = logging.getLogger("twinserve")

# The model directory served when none is named: the embedded language model, loaded through
# the same loader and pipeline as any user's model.
BUILTIN_LLM_DIR = Path(__file__).resolve().parent / "builtin" / "llm"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinserve",
        description="Serve a Truss-style model directory (or, with none, the embedded language "
                    "model) over HTTP and gRPC from one process; or call a running daemon.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve a model directory over HTTP and gRPC")
    serve.add_argument("model_dir", type=Path, nargs="?", default=None,
                       help="a Truss-style model directory (left out: the embedded "
                            "SmolLM2-135M-Instruct language model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=8080, help="HTTP port (0: any free one)")
    serve.add_argument("--grpc-port", type=int, default=50051, help="gRPC port (0: any free one)")
    serve.add_argument("--backend", choices=("hf", "vllm", "trtllm"), default=None,
                       help="the engine backend that runs the model (default: its config's; "
                            "the embedded model's is hf)")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=_serve)
    call = sub.add_parser("call", help="call a running daemon with a JSON input")
    where = call.add_mutually_exclusive_group(required=True)
    where.add_argument("--grpc", metavar="TARGET", help="gRPC target, e.g. 127.0.0.1:50051")
    where.add_argument("--http", metavar="URL", help="HTTP URL, e.g. http://127.0.0.1:8080")
    call.add_argument("input", help="the JSON input, e.g. '{\"x\": 1}'")
    call.add_argument("--stream", action="store_true", help="print chunks as they arrive")
    call.add_argument("--route", default="predict", help="model route (default predict)")
    call.add_argument("--timeout", type=float, default=None, help="seconds (default: none)")
    call.add_argument("--api-key", default=None, help="sent as Authorization: Bearer KEY")
    call.set_defaults(func=_call)
    return parser


def _serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, "text", access=True)  # until config.yaml says otherwise
    server_config = ServerConfig(host=args.host, http_port=args.http_port,
                                 grpc_port=args.grpc_port, log_level=args.log_level)
    model_dir = args.model_dir if args.model_dir is not None else BUILTIN_LLM_DIR
    try:
        config = from_cli(model_dir, server_config, backend=args.backend)
        logs.configure(args.log_level, config.server.log_format, config.server.access_log)
        from daemon.metrics import Metrics
        from daemon.model.loader import build_engine, build_pipeline

        metrics = Metrics()
        engine = build_engine(config, metrics)
        pipeline = build_pipeline(config, metrics, engine)
    except ModelDefinitionError as exc:
        log.error("%s", exc.message)
        return 1
    from daemon.server import Server

    _raise_open_files_limit()
    _install_uvloop()
    return asyncio.run(Server(config, pipeline, metrics=metrics, engine=engine).run())


def _call(args: argparse.Namespace) -> int:
    """Print the result as JSON, or each chunk as it arrives: str and bytes raw, JSON a line."""
    import json

    from clients import GrpcClient, HttpClient, TwinserveError

    try:
        obj = json.loads(args.input)
    except ValueError as exc:
        print(f"input is not valid JSON: {exc}", file=sys.stderr)
        return 2
    options = {"timeout": args.timeout, "api_key": args.api_key}
    client = GrpcClient(args.grpc, **options) if args.grpc else HttpClient(args.http, **options)
    try:
        if not args.stream:
            print(json.dumps(client.predict(obj, route=args.route)))
            return 0
        for chunk in client.predict_stream(obj, route=args.route):
            if isinstance(chunk, bytes):
                sys.stdout.buffer.write(chunk)
            elif isinstance(chunk, str):
                sys.stdout.write(chunk)
            else:
                sys.stdout.write(json.dumps(chunk) + "\n")
            sys.stdout.flush()
        return 0
    except TwinserveError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _raise_open_files_limit() -> None:
    """Every connection is a file descriptor: take the hard limit, not the soft one (often
    1024), so idle or slow clients run into the idle timeout before they run the daemon out
    of descriptors, as nginx's worker_rlimit_nofile does."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, hard,
                        exc)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
