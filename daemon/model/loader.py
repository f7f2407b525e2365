"""Import a model directory's Model class and construct it with what its constructor accepts."""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from daemon.admission import AdmissionController
from daemon.body_memory import BodyMemory
from daemon.config import Config, ModelConfig, secret_env_name
from daemon.engine.core import EngineCore
from daemon.errors import ModelDefinitionError
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.model.session import SessionLimits
from daemon.model.signature import check_model_class
from daemon.request import BodyLimits

log = logging.getLogger("twinserve.model")


class Secrets(Mapping[str, str]):
    """Secrets declared in config.yaml, each overridable by `TWINSERVE_SECRET_<NAME>`.

    A declared secret with no value raises a KeyError that says how to provide it.
    """

    def __init__(self, declared: Mapping[str, str | None], overrides: Mapping[str, str]) -> None:
        self._values: dict[str, str | None] = {}
        for name, default in declared.items():
            self._values[name] = overrides.get(secret_env_name(name), default)

    def __getitem__(self, name: str) -> str:
        if name not in self._values:
            raise KeyError(f"secret {name!r} is not declared under `secrets` in config.yaml")
        value = self._values[name]
        if value is None:
            raise KeyError(
                f"secret {name!r} has no value: set TWINSERVE_SECRET_{secret_env_name(name)}"
            )
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name, value in self._values.items() if value is not None)

    def __len__(self) -> int:
        return sum(1 for value in self._values.values() if value is not None)

    def __repr__(self) -> str:  # never print the values
        return f"Secrets({sorted(self._values)})"


def import_model_class(config: ModelConfig) -> type:
    """Import `model_module_dir/model_class_filename` as a package module, as Truss does.

    With no model file but an `engine:` section, the built-in text-generation model.
    """
    if config.ignored_keys:
        log.info("config.yaml: ignoring Truss build/platform keys: %s",
                 ", ".join(config.ignored_keys))
    apply_to_process(config)
    path = config.model_file
    if not path.is_file() and config.engine is not None:
        from daemon.model.text_generation import TextGenerationModel

        return TextGenerationModel
    if not path.is_file():
        raise ModelDefinitionError(
            f"{path}: model file not found (config keys model_module_dir / model_class_filename)"
        )
    log.info("Loading truss model from file %s", path)
    module_name = ".".join(
        (*Path(config.model_module_dir).parts, Path(config.model_class_filename).stem)
    )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelDefinitionError(f"{path}: import failed: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, config.model_class_name, None)
    if not isinstance(cls, type):
        raise ModelDefinitionError(
            f"{path}: no class named {config.model_class_name!r} (config key model_class_name)"
        )
    return cls


def apply_to_process(config: ModelConfig) -> None:
    """Set config.yaml's environment_variables and put the model directory, then its package
    directories, first on sys.path: before model or engine code is imported. Idempotent."""
    # As in Truss, config.yaml wins over a variable already set: Truss puts these in the
    # container's spec (`docker run -e` for a local run), above the image's own ENV.
    os.environ.update(config.environment_variables)
    entries = [str(config.root.resolve()), *map(str, config.package_dirs)]
    for entry in reversed(entries):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def construct(cls: type, available: Mapping[str, Any]) -> Any:
    """Call `cls(...)` with the keyword arguments its constructor names (all, given **kwargs)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return cls(**available)
    accepted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return cls(**{k: v for k, v in available.items() if k in accepted})


def build_engine(config: Config, metrics: Metrics) -> EngineCore | None:
    """The engine named by config.yaml's `engine:` section; None when there is none."""
    if config.model.engine is None:
        return None
    apply_to_process(config.model)  # torch and transformers read some variables at import
    from daemon.engine.backends import build_backend

    return EngineCore(build_backend(config.model.engine, config.cache_dir), metrics,
                      max_queue=config.model.runtime.max_queue)


def build_pipeline(config: Config, metrics: Metrics,
                   engine: EngineCore | None = None) -> ModelPipeline:
    """Import and check the model class; construction and load() happen in `pipeline.load()`.

    With an engine, the model may take it as its `engine` argument, and the daemon is ready
    only while the engine is.
    """
    model = config.model
    cls = import_model_class(model)
    specs = check_model_class(cls)
    kwargs: dict[str, Any] = {
        "config": dict(model.raw),
        "data_dir": (model.root / model.data_dir).resolve(),
        "secrets": Secrets(model.secrets, config.secret_overrides),
        "environment": None,
        "model_name": model.model_name,
    }
    if engine is not None:
        kwargs["engine"] = engine
    runtime = model.runtime
    admission = AdmissionController(runtime.predict_concurrency, runtime.max_queue,
                                    runtime.queue_timeout_s)
    body_limits = BodyLimits.of(runtime, BodyMemory(runtime.max_body_memory_bytes))
    pipeline = ModelPipeline(functools.partial(construct, cls, kwargs), specs,
                             admission=admission, body_limits=body_limits,
                             request_timeout_s=runtime.request_timeout_s,
                             write_timeout_s=runtime.write_timeout_s,
                             stream_read_timeout_s=runtime.streaming_read_timeout,
                             cancel_grace_s=runtime.cancel_grace_s,
                             load_retries=runtime.load_retries,
                             session_limits=SessionLimits.of(runtime), metrics=metrics,
                             engine_unavailable=engine.unavailable if engine else None)
    metrics.track(in_flight=lambda: pipeline.in_flight, queue_depth=lambda: admission.waiting,
                  body_memory=lambda: body_limits.memory.held if body_limits.memory else 0)
    return pipeline
