"""config.yaml and command-line flags -> one typed, validated Config.

Every error names the offending key (`runtime.predict_concurrency: ...`). Every key Truss
knows is accepted, so a Truss model directory loads unchanged; those that only matter to
Baseten's image builder and platform (requirements, resources, ...) are ignored, and the
loader names them in one INFO line. A key neither Truss nor twinserve knows is an error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from daemon.errors import ConfigError

MiB = 1024 * 1024

# Every key Truss's TrussConfig knows, and those of its `runtime:` section (class Runtime):
# basetenlabs/truss truss/base/truss_config.py at commit 0bee989b9ec8 (2026-08-18), the same
# lists as truss/config.schema.json there. Plus the legacy keys Truss still takes: `hf_cache`
# (read as model_cache) and `runtime.num_workers` (1 only). Nested sections other than
# runtime: are not looked into.
_TRUSS_KEYS = frozenset(
    {
        "apply_library_patches", "base_image", "bis_llm", "build", "build_commands",
        "bundled_packages_dir", "cache_internal", "data_dir", "description", "docker_server",
        "environment_variables", "examples_filename", "external_data", "external_package_dirs",
        "input_type", "live_reload", "model_cache", "model_class_filename", "model_class_name",
        "model_framework", "model_metadata", "model_module_dir", "model_name", "model_type",
        "python_version", "requirements", "requirements_file", "resources", "runtime",
        "secrets", "spec_version", "system_packages", "training_checkpoints", "trt_llm",
        "use_local_src", "weights",
        "hf_cache",
    }
)
_TRUSS_RUNTIME_KEYS = frozenset(
    {
        "egress_restrictions", "enable_debug_logs", "enable_tracing_data", "health_checks",
        "is_websocket_endpoint", "oidc", "predict_concurrency", "remote_ssh",
        "streaming_read_timeout", "transport", "truss_server_version_override",
        "num_workers",
    }
)
# The Truss keys twinserve acts on. The others only matter to Baseten's image builder and
# platform (or to servers twinserve does not run: docker_server, trt_llm, bis_llm); they are
# accepted and named in one INFO line at start-up. A runtime key is acted on when it is a
# RuntimeConfig field.
_TRUSS_KEYS_USED = frozenset(
    {
        "model_name", "model_module_dir", "model_class_filename", "model_class_name", "data_dir",
        "bundled_packages_dir", "external_package_dirs", "secrets", "environment_variables",
        "model_metadata", "runtime",
    }
)
_OWN_KEYS = frozenset({"engine", "server"})  # twinserve's, not Truss's


TRANSPORT_KINDS = ("http", "websocket", "grpc")


@dataclasses.dataclass(frozen=True)
class TransportConfig:
    """Truss's `runtime.transport`. twinserve serves every transport whatever `kind` says;
    the WebSocket keep-alive pings are its settings (uvicorn's defaults, as Truss runs it)."""

    kind: str = "http"
    ping_interval_seconds: float | None = 20.0  # null: no pings
    ping_timeout_seconds: float | None = 20.0  # a ping unanswered this long drops the client


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """The `runtime:` section. Every limit a client could otherwise push without bound has a
    default here; the README's table says what each does on both transports."""

    predict_concurrency: int = 1
    max_queue: int | None = 256  # waiting calls beyond predict_concurrency; None: unbounded
    queue_timeout_s: float | None = None
    request_timeout_s: float | None = None  # whole call, streaming included; None: no limit
    max_request_bytes: int = 64 * MiB
    max_header_bytes: int = 16 * 1024  # one HTTP header line / all gRPC metadata
    # On SIGTERM readiness fails at once, but new calls are still served for this long, so
    # load balancers and endpoint controllers stop sending here before connections are
    # refused (docs/drain.md); SIGINT skips it.
    drain_grace_s: float = 5.0
    drain_timeout_s: float = 30.0  # then in-flight calls may finish for this long
    # A connection with no call in progress (idle between calls, or still sending its first
    # call's headers) is closed after this long.
    idle_timeout_s: float | None = 30.0
    body_idle_timeout_s: float | None = 30.0  # a body that sends nothing for this long: 408
    body_timeout_s: float | None = 300.0  # a whole body taking longer than this to arrive: 408
    # A stream the client stops reading: the call ends once one chunk has waited this long.
    write_timeout_s: float | None = 60.0
    # Bodies being read, parsed and used at once, raw and parsed (daemon/body_memory.py).
    max_body_memory_bytes: int = 512 * MiB
    # Truss's key, with its default: a stream whose model produces nothing for this long
    # is ended (daemon/model/streams.py).
    streaming_read_timeout: float | None = 60.0
    # A model method that takes the request may end its own work this long after its
    # client left, before it is cancelled (daemon/model/grace.py); 0: cancelled at once.
    cancel_grace_s: float = 5.0
    load_retries: int = 1  # Truss's default (NUM_LOAD_RETRIES_TRUSS): load() tried twice
    # Sessions (a model's `websocket` method, daemon/model/session.py): Truss's
    # runtime.transport section, a session with no frame either way for this long is
    # closed, and a frame larger than this is refused (close 1009).
    transport: TransportConfig = dataclasses.field(default_factory=TransportConfig)
    session_idle_timeout_s: float | None = 300.0
    max_frame_bytes: int = 16 * MiB


ENGINE_BACKENDS = ("hf", "vllm", "trtllm", "simulated")
ENGINE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """The `engine:` section: which backend generates text, with which weights.

    `model` is backend-specific: for hf and vllm a local directory or Hub id, for trtllm what
    `tensorrt_llm.LLM(model=...)` takes; left out, the embedded SmolLM2-135M-Instruct.
    """

    backend: str
    model: str | None = None
    max_batch_size: int | None = None  # generations run at once; None: the backend's choice
    device: str = "cpu"  # hf only
    # hf and vllm: float32, bfloat16, float16, or the checkpoint's (auto)
    dtype: str = "auto"
    # hf and vllm: the KV cache shared by the batch; None: hf 512 MiB, vllm its own default
    kv_cache_mib: int | None = None
    max_batch_tokens: int = 512  # hf only: tokens (prompt chunks and decodes) in one step
    # hf only: the engine process's torch threads; None: torch's default, one per CPU
    threads: int | None = None
    token_delay_ms: float = 20.0  # simulated only
    abort_timeout_s: float = 5.0  # trtllm only: wait this long for the final 'cancelled' item
    max_model_len: int | None = None  # vllm only: the context, prompt included; None: model's
    enforce_eager: bool = True  # vllm only: no graph compilation (faster start, exact greedy)
    tensor_parallel_size: int = 1  # vllm only: GPUs one model is split across
    gpu_memory_utilization: float = 0.9  # vllm on GPUs: the share for weights and KV cache


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What config.yaml says about the model directory."""

    root: Path
    model_name: str
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    model_class_name: str = "Model"
    data_dir: str = "data"
    bundled_packages_dir: str = "packages"
    external_package_dirs: tuple[str, ...] = ()
    secrets: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    environment_variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    engine: EngineConfig | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ignored_keys: tuple[str, ...] = ()  # Truss keys present but not acted on (runtime.x dotted)

    @property
    def model_file(self) -> Path:
        return self.root / self.model_module_dir / self.model_class_filename

    @property
    def package_dirs(self) -> tuple[Path, ...]:
        """bundled_packages_dir, then external_package_dirs: each relative to the model
        directory unless absolute, as Truss resolves them (truss_spec.py)."""
        dirs = (self.bundled_packages_dir, *self.external_package_dirs)
        return tuple((self.root / d).resolve() for d in dirs)


LOG_FORMATS = ("text", "json")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Flags, the `server:` section of config.yaml, and TWINSERVE_API_KEY, merged."""

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 50051
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = True
    api_key: str | None = dataclasses.field(default=None, repr=False)
    # Calls open at once on one gRPC connection (daemon/grpc/server.py says what it costs).
    grpc_max_concurrent_streams: int = 256


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig
    server: ServerConfig
    secret_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cache_dir: Path = dataclasses.field(default_factory=lambda: default_cache_dir({}))


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where converted weights are kept: $TWINSERVE_CACHE_DIR, else ~/.cache/twinserve."""
    configured = environ.get("TWINSERVE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "twinserve"


def load_model_config(root: Path) -> ModelConfig:
    """Read `root/config.yaml` (optional: a bare model directory gets the defaults)."""
    if not root.is_dir():
        raise ConfigError(f"model directory {str(root)!r} does not exist")
    path = root / "config.yaml"
    raw: Any = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_kind(raw)}")
    return parse_model_config(root, raw)


def parse_model_config(root: Path, raw: Mapping[str, Any]) -> ModelConfig:
    for key in raw:
        if key not in _TRUSS_KEYS and key not in _OWN_KEYS:
            raise ConfigError(f"{key}: unknown key in config.yaml")
    return ModelConfig(
        root=root,
        model_name=_str(raw, "model_name", default=root.resolve().name),
        model_module_dir=_str(raw, "model_module_dir", default="model"),
        model_class_filename=_str(raw, "model_class_filename", default="model.py"),
        model_class_name=_str(raw, "model_class_name", default="Model"),
        data_dir=_str(raw, "data_dir", default="data"),
        bundled_packages_dir=_str(raw, "bundled_packages_dir", default="packages"),
        external_package_dirs=_external_package_dirs(root, raw),
        secrets=_secrets(raw),
        environment_variables=_environment_variables(raw),
        model_metadata=_mapping(raw, "model_metadata"),
        runtime=_runtime(_mapping(raw, "runtime")),
        engine=_engine(raw.get("engine")),
        raw=dict(raw),
        ignored_keys=_ignored_keys(raw),
    )


def _ignored_keys(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The Truss keys present that twinserve accepts without acting on, in file order."""
    runtime_fields = {f.name for f in dataclasses.fields(RuntimeConfig)}
    ignored = [key for key in raw if key in _TRUSS_KEYS and key not in _TRUSS_KEYS_USED]
    ignored += [f"runtime.{key}" for key in _mapping(raw, "runtime")
                if key in _TRUSS_RUNTIME_KEYS and key not in runtime_fields]
    return tuple(ignored)


def _external_package_dirs(root: Path, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Directories put on sys.path like bundled_packages_dir. Truss refuses one that does not
    exist (truss_handle.py `_validate_external_packages`), and so do we."""
    value = raw.get("external_package_dirs")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"external_package_dirs: expected a list of directories, "
                          f"got {_kind(value)}")
    for index, entry in enumerate(value):
        key = f"external_package_dirs[{index}]"
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{key}: expected a non-empty string, got {_kind(entry)} {entry!r}")
        if not (root / entry).is_dir():
            raise ConfigError(f"{key}: no directory at {str((root / entry).resolve())!r}")
    return tuple(value)


def _environment_variables(raw: Mapping[str, Any]) -> dict[str, str]:
    """Strings, numbers and booleans, turned into strings as Truss's `TrussConfig.from_dict`
    does (true -> "true"). Truss would also stringify null or a list; we refuse them."""
    out: dict[str, str] = {}
    for name, value in _mapping(raw, "environment_variables").items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"environment_variables: {name!r} is not a variable name")
        key = f"environment_variables.{name}"
        if isinstance(value, bool):
            out[name] = str(value).lower()
        elif isinstance(value, (str, int, float)):
            out[name] = str(value)
        else:
            raise ConfigError(f"{key}: expected a string, number or boolean, got {_kind(value)}")
        if "\0" in out[name]:
            raise ConfigError(f"{key}: contains a NUL character")
    return out


def _runtime(raw: Mapping[str, Any]) -> RuntimeConfig:
    fields = {f.name for f in dataclasses.fields(RuntimeConfig)}
    for key in raw:
        if key not in fields and key not in _TRUSS_RUNTIME_KEYS:
            raise ConfigError(f"runtime.{key}: unknown key")
    workers = raw.get("num_workers", 1)
    if workers != 1 or isinstance(workers, bool):  # Truss's rule since 0.9.49
        raise ConfigError(f"runtime.num_workers: only 1 is allowed (use predict_concurrency), "
                          f"got {workers!r}")
    return RuntimeConfig(
        predict_concurrency=_positive_int(raw, "runtime.predict_concurrency", 1),
        max_queue=_optional_count(raw, "runtime.max_queue", 256),
        queue_timeout_s=_optional_seconds(raw, "runtime.queue_timeout_s"),
        request_timeout_s=_optional_seconds(raw, "runtime.request_timeout_s"),
        max_request_bytes=_positive_int(raw, "runtime.max_request_bytes", 64 * MiB),
        max_header_bytes=_positive_int(raw, "runtime.max_header_bytes", 16 * 1024),
        drain_grace_s=_non_negative_number(raw, "runtime.drain_grace_s", 5.0),
        drain_timeout_s=_non_negative_number(raw, "runtime.drain_timeout_s", 30.0),
        idle_timeout_s=_seconds_or_off(raw, "runtime.idle_timeout_s", 30.0),
        body_idle_timeout_s=_seconds_or_off(raw, "runtime.body_idle_timeout_s", 30.0),
        body_timeout_s=_seconds_or_off(raw, "runtime.body_timeout_s", 300.0),
        write_timeout_s=_seconds_or_off(raw, "runtime.write_timeout_s", 60.0),
        max_body_memory_bytes=_positive_int(raw, "runtime.max_body_memory_bytes", 512 * MiB),
        streaming_read_timeout=_seconds_or_off(raw, "runtime.streaming_read_timeout", 60.0),
        cancel_grace_s=_non_negative_number(raw, "runtime.cancel_grace_s", 5.0),
        load_retries=_count(raw, "runtime.load_retries", 1),
        transport=_transport(raw.get("transport")),
        session_idle_timeout_s=_seconds_or_off(raw, "runtime.session_idle_timeout_s", 300.0),
        max_frame_bytes=_positive_int(raw, "runtime.max_frame_bytes", 16 * MiB),
    )


def _transport(raw: Any) -> TransportConfig:
    """Truss's runtime.transport: {kind: http | websocket | grpc}; a websocket one may set
    ping_interval_seconds and ping_timeout_seconds."""
    if raw is None or raw == {}:
        return TransportConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"runtime.transport: expected a mapping, got {_kind(raw)}")
    kind = raw.get("kind", "http")
    if kind not in TRANSPORT_KINDS:
        raise ConfigError(f"runtime.transport.kind: expected one of "
                          f"{', '.join(TRANSPORT_KINDS)}, got {kind!r}")
    allowed = {"kind"} | ({"ping_interval_seconds", "ping_timeout_seconds"}
                          if kind == "websocket" else set())
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"runtime.transport.{key}: unknown key for kind {kind!r}")
    return TransportConfig(
        kind=kind,
        ping_interval_seconds=_seconds_or_off(raw, "runtime.transport.ping_interval_seconds",
                                              20.0),
        ping_timeout_seconds=_seconds_or_off(raw, "runtime.transport.ping_timeout_seconds",
                                             20.0),
    )


def _engine(raw: Any) -> EngineConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"engine: expected a mapping, got {_kind(raw)}")
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"engine.{key}: unknown key (known: {', '.join(sorted(fields))})")
    backend = raw.get("backend")
    if backend not in ENGINE_BACKENDS:
        raise ConfigError(
            f"engine.backend: expected one of {', '.join(ENGINE_BACKENDS)}, got {backend!r}")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"engine.model: expected a non-empty string, "
                          f"got {_kind(model)} {model!r}")
    max_batch_size = raw.get("max_batch_size")
    if max_batch_size is not None:
        max_batch_size = _positive_int(raw, "engine.max_batch_size", 1)
    dtype = raw.get("dtype", "auto")
    if dtype not in ENGINE_DTYPES:
        raise ConfigError(f"engine.dtype: expected one of {', '.join(ENGINE_DTYPES)}, "
                          f"got {dtype!r}")
    return EngineConfig(
        backend=backend,
        model=model,
        max_batch_size=max_batch_size,
        device=_engine_device(raw.get("device", "cpu")),
        dtype=dtype,
        kv_cache_mib=None if raw.get("kv_cache_mib") is None
        else _positive_int(raw, "engine.kv_cache_mib", 512),
        max_batch_tokens=_positive_int(raw, "engine.max_batch_tokens", 512),
        threads=None if raw.get("threads") is None
        else _positive_int(raw, "engine.threads", 1),
        token_delay_ms=_non_negative_number(raw, "engine.token_delay_ms", 20.0),
        abort_timeout_s=_non_negative_number(raw, "engine.abort_timeout_s", 5.0),
        max_model_len=None if raw.get("max_model_len") is None
        else _positive_int(raw, "engine.max_model_len", 1),
        enforce_eager=_bool(raw, "engine.enforce_eager", True),
        tensor_parallel_size=_positive_int(raw, "engine.tensor_parallel_size", 1),
        gpu_memory_utilization=_fraction(raw, "engine.gpu_memory_utilization", 0.9),
    )


def _bool(raw: Mapping[str, Any], dotted: str, default: bool) -> bool:
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if not isinstance(value, bool):
        raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
    return value


def _fraction(raw: Mapping[str, Any], dotted: str, default: float) -> float:
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{dotted}: expected a number above 0 and at most 1, got {value!r}")
    return float(value)


def _engine_device(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"engine.device: expected a torch device string such as 'cpu' or "
                          f"'cuda', got {_kind(value)} {value!r}")
    return value


def secret_overrides_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`TWINSERVE_SECRET_<NAME>` variables, keyed by their normalised NAME."""
    prefix = "TWINSERVE_SECRET_"
    return {k[len(prefix):]: v for k, v in environ.items() if k.startswith(prefix)}


def secret_env_name(name: str) -> str:
    """The variable that overrides secret `name` (`hf-token` -> `TWINSERVE_SECRET_HF_TOKEN`)."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def from_cli(model_dir: Path, server: ServerConfig, backend: str | None = None) -> Config:
    """The config of `twinserve serve model_dir`; `backend` (--backend) replaces the engine
    section's backend."""
    model = load_model_config(model_dir)
    if backend is not None:
        if model.engine is None:
            raise ConfigError(f"--backend {backend}: {model_dir} has no engine: section to "
                              "run on it")
        if backend not in ENGINE_BACKENDS:
            raise ConfigError(f"--backend: expected one of {', '.join(ENGINE_BACKENDS)}, "
                              f"got {backend!r}")
        model = dataclasses.replace(model, engine=dataclasses.replace(model.engine,
                                                                      backend=backend))
    return Config(
        model=model,
        server=with_server_section(server, _mapping(model.raw, "server"), os.environ),
        secret_overrides=secret_overrides_from_env(os.environ),
        cache_dir=default_cache_dir(os.environ),
    )


def with_server_section(flags: ServerConfig, raw: Mapping[str, Any],
                        environ: Mapping[str, str]) -> ServerConfig:
    """Fold config.yaml's `server:` section into the flags; TWINSERVE_API_KEY wins over it."""
    known = {"api_key", "log_format", "access_log", "grpc_max_concurrent_streams"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"server.{key}: unknown key (known: {', '.join(sorted(known))})")
    log_format = raw.get("log_format", flags.log_format)
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"server.log_format: expected one of {', '.join(LOG_FORMATS)}, "
                          f"got {log_format!r}")
    access_log = raw.get("access_log", flags.access_log)
    if not isinstance(access_log, bool):
        raise ConfigError(f"server.access_log: expected true or false, got {access_log!r}")
    api_key = environ.get("TWINSERVE_API_KEY") or raw.get("api_key") or flags.api_key
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise ConfigError("server.api_key: expected a non-empty string")
    streams = _positive_int(raw, "server.grpc_max_concurrent_streams",
                            flags.grpc_max_concurrent_streams)
    return dataclasses.replace(flags, log_format=log_format, access_log=access_log,
                               api_key=api_key, grpc_max_concurrent_streams=streams)


# -- typed readers ---------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return type(value).__name__ if value is not None else "null"


def _str(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {_kind(value)} {value!r}")
    return value


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {_kind(value)}")
    return value


def _secrets(raw: Mapping[str, Any]) -> dict[str, str | None]:
    """Each secret's default (None: none), as a string."""
    out: dict[str, str | None] = {}
    for name, value in _mapping(raw, "secrets").items():
        if value is None:
            out[str(name)] = None
        elif isinstance(value, (str, int, float, bool)):
            out[str(name)] = str(value)
        else:
            raise ConfigError(f"secrets.{name}: expected a string, got {_kind(value)}")
    return out


def _positive_int(raw: Mapping[str, Any], dotted: str, default: int) -> int:
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{dotted}: expected a positive integer, got {value!r}")
    return value


def _count(raw: Mapping[str, Any], dotted: str, default: int) -> int:
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{dotted}: expected a non-negative integer, got {value!r}")
    return value


def _optional_count(raw: Mapping[str, Any], dotted: str, default: int | None = None
                    ) -> int | None:
    """A count; left out: `default`; null: no limit."""
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{dotted}: expected a non-negative integer or null, got {value!r}")
    return value


def _optional_seconds(raw: Mapping[str, Any], dotted: str) -> float | None:
    value = raw.get(dotted.rsplit(".", 1)[-1])
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{dotted}: expected a positive number of seconds or null, "
                          f"got {value!r}")
    return float(value)


def _seconds_or_off(raw: Mapping[str, Any], dotted: str, default: float) -> float | None:
    """A time limit; left out: `default`; null: no limit."""
    return _optional_seconds({dotted.rsplit(".", 1)[-1]: default, **raw}, dotted)


def _non_negative_number(raw: Mapping[str, Any], dotted: str, default: float) -> float:
    value = raw.get(dotted.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{dotted}: expected a non-negative number, got {value!r}")
    return float(value)
