"""The `twinserve` command. Flags and environment are read here and in config.py only."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from daemon import logs
from daemon.config import Config, ServerConfig, from_cli
from daemon.errors import ConfigError, ModelDefinitionError

log = logging.getLogger("twinserve")

# The model directory served when none is named: the embedded language model, loaded through
# the same loader and pipeline as any user's model.
BUILTIN_LLM_DIR = Path(__file__).resolve().parent / "builtin" / "llm"


# `twinserve serve` and `twinserve prepare` settings that an environment variable can give
# (a container's only way in); a flag given on the command line wins over its variable. The
# daemon's other variables (TWINSERVE_API_KEY, TWINSERVE_CACHE_DIR, TWINSERVE_SECRET_<NAME>)
# are read in config.py.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BACKEND_CHOICES = ("hf", "vllm", "trtllm")
ENV_MODEL_DIR = "TWINSERVE_MODEL_DIR"
ENV_BACKEND = "TWINSERVE_BACKEND"


class UsageError(Exception):
    """A bad flag or environment value: reported on one line, exit status 2."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535 "
                                         f"(0: any free one), got {text!r}")
    return value


def _one_of(options: tuple[str, ...], any_case: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if any_case else text
        if value not in options:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(options)}, "
                                             f"got {text!r}")
        return value
    return parse


_log_level = _one_of(LOG_LEVELS, any_case=True)  # in any case, as `logging` takes them


@dataclasses.dataclass(frozen=True)
class EnvSetting:
    """A setting of `serve`/`prepare` that `variable` gives when its flag is left out."""

    dest: str  # the argparse destination
    variable: str
    parse: Callable[[str], Any]
    default: Any


ENV_SETTINGS = (
    EnvSetting("model_dir", ENV_MODEL_DIR, Path, None),  # None: the embedded model
    EnvSetting("host", "TWINSERVE_HOST", str, "127.0.0.1"),
    EnvSetting("http_port", "TWINSERVE_HTTP_PORT", _port, 8080),
    EnvSetting("grpc_port", "TWINSERVE_GRPC_PORT", _port, 50051),
    EnvSetting("backend", ENV_BACKEND, _one_of(BACKEND_CHOICES), None),
    EnvSetting("log_level", "TWINSERVE_LOG_LEVEL", _log_level, "INFO"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        args.from_env = _fill_from_env(args, os.environ)
    except UsageError as exc:
        print(f"twinserve {args.command}: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args))


def _fill_from_env(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Give each setting left out on the command line its variable's value, else its
    default; returns {dest: variable} for those the environment gave. An empty variable
    counts as unset, as Kubernetes and `docker run -e NAME=` leave them."""
    from_env: dict[str, str] = {}
    for setting in ENV_SETTINGS:
        if not hasattr(args, setting.dest) or getattr(args, setting.dest) is not None:
            continue
        text = environ.get(setting.variable, "")
        if not text:
            setattr(args, setting.dest, setting.default)
            continue
        try:
            setattr(args, setting.dest, setting.parse(text))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UsageError(f"{setting.variable}: {exc}") from exc
        from_env[setting.dest] = setting.variable
    if "model_dir" in from_env and not args.model_dir.is_dir():
        raise UsageError(f"{ENV_MODEL_DIR}: no model directory at {str(args.model_dir)!r}")
    return from_env


def _env_help() -> str:
    flags = {"model_dir": "MODEL_DIR"}
    rows = [(s.variable, flags.get(s.dest, "--" + s.dest.replace("_", "-")))
            for s in ENV_SETTINGS]
    rows += [("TWINSERVE_API_KEY", "server.api_key (wins over config.yaml)"),
             ("TWINSERVE_CACHE_DIR", "converted weights (default ~/.cache/twinserve)"),
             ("TWINSERVE_SECRET_<NAME>", "the model's secret NAME")]
    lines = [f"  {variable:<26} {what}" for variable, what in rows]
    return "\n".join(["environment (a flag given on the command line wins):", *lines])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinserve",
        description="Serve a Truss-style model directory (or, with none, the embedded language "
                    "model) over HTTP and gRPC from one process; or call a running daemon.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve a model directory over HTTP and gRPC",
                           epilog=_env_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default=None,
                       help="address to bind (default 127.0.0.1; env TWINSERVE_HOST)")
    serve.add_argument("--http-port", type=_port, default=None,
                       help="HTTP port (default 8080, 0: any free one; env TWINSERVE_HTTP_PORT)")
    serve.add_argument("--grpc-port", type=_port, default=None,
                       help="gRPC port (default 50051, 0: any free one; "
                            "env TWINSERVE_GRPC_PORT)")
    _model_arguments(serve)
    serve.set_defaults(func=_serve)
    prepare = sub.add_parser(
        "prepare", help="do a first start's one-time work (convert the embedded model into "
                        "the cache) and exit, e.g. while building an image",
        epilog=_env_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_arguments(prepare)
    prepare.set_defaults(func=_prepare)
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


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, nargs="?", default=None,
                        help="a Truss-style model directory (left out: TWINSERVE_MODEL_DIR, "
                             "else the embedded SmolLM2-135M-Instruct language model)")
    parser.add_argument("--backend", type=_one_of(BACKEND_CHOICES), default=None,
                        metavar="{" + ",".join(BACKEND_CHOICES) + "}",
                        help="the engine backend that runs the model (default: its config's; "
                             "the embedded model's is hf; env TWINSERVE_BACKEND)")
    parser.add_argument("--log-level", type=_log_level, default=None,
                        metavar="{" + ",".join(LOG_LEVELS) + "}",
                        help="default INFO; env TWINSERVE_LOG_LEVEL")


def _load_config(args: argparse.Namespace, server_config: ServerConfig) -> Config:
    """The Config of `args`; an error about the backend names its variable when the
    environment gave it (config.py's message names the flag)."""
    model_dir = args.model_dir if args.model_dir is not None else BUILTIN_LLM_DIR
    try:
        return from_cli(model_dir, server_config, backend=args.backend)
    except ConfigError as exc:
        if "backend" in args.from_env and exc.message.startswith("--backend"):
            raise ConfigError(f"{exc.message} ({ENV_BACKEND}={args.backend})") from exc
        raise


def _serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, "text", access=True)  # until config.yaml says otherwise
    server_config = ServerConfig(host=args.host, http_port=args.http_port,
                                 grpc_port=args.grpc_port, log_level=args.log_level)
    try:
        config = _load_config(args, server_config)
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


def _prepare(args: argparse.Namespace) -> int:
    """Convert what a first start would (the embedded model, into the cache directory), so
    an image that ran this at build starts in seconds, from a read-only cache."""
    logs.configure(args.log_level, "text", access=False)
    try:
        config = _load_config(args, ServerConfig(log_level=args.log_level))
        from daemon.engine.backends import prepare

        prepared = prepare(config.model.engine, config.cache_dir)
    except ModelDefinitionError as exc:
        log.error("%s", exc.message)
        return 1
    if prepared is None:
        log.info("nothing to prepare: %s loads its model as it is", config.model.model_name)
    else:
        log.info("prepared: %s", prepared)
    return 0


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
