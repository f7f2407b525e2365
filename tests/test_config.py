from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from daemon.config import (
    MiB,
    ServerConfig,
    load_model_config,
    parse_model_config,
    secret_env_name,
    with_server_section,
)
from daemon.errors import ConfigError
from daemon.model.loader import Secrets, apply_to_process
from tests.conftest import StartDaemon

# What `truss init` writes (truss/truss_handle/build.py `_populate_traditional_target_directory`,
# basetenlabs/truss 0bee989b9ec8): config.yaml, model/model.py, empty data/ and packages/.
TRUSS_INIT_CONFIG = (
    "# yaml-language-server: $schema=https://raw.githubusercontent.com/basetenlabs/truss"
    "/main/truss/config.schema.json\n"
) + """\
model_name: My Model
python_version: py311
resources:
  accelerator: null
  cpu: '1'
  memory: 2Gi
  use_gpu: false
"""
TRUSS_INIT_MODEL = """\
class Model:
    def __init__(self, **kwargs):
        self._model = None

    def load(self):
        pass

    def predict(self, model_input):
        return model_input
"""
# Every key, as `TrussConfig(...).to_dict(verbose=True)` writes it (truss 0bee989b9ec8).
TRUSS_VERBOSE_CONFIG = """\
apply_library_patches: true
base_image: null
bis_llm: null
build: {arguments: {}, model_server: TrussServer, no_cache: false, secret_to_path_mapping: {}}
build_commands: []
bundled_packages_dir: packages
cache_internal: []
data_dir: data
description: null
docker_server: null
environment_variables: {}
examples_filename: examples.yaml
external_data: null
external_package_dirs: []
input_type: Any
live_reload: false
model_cache: []
model_class_filename: model.py
model_class_name: Model
model_framework: custom
model_metadata: {}
model_module_dir: model
model_name: My Model
model_type: Model
python_version: py311
requirements: []
requirements_file: null
resources: {accelerator: null, cpu: '1', memory: 2Gi, use_gpu: false}
runtime:
  egress_restrictions: null
  enable_debug_logs: false
  enable_tracing_data: false
  health_checks: {restart_check_delay_seconds: null, restart_threshold_seconds: null,
                  startup_threshold_seconds: null, stop_traffic_threshold_seconds: null}
  is_websocket_endpoint: false
  oidc: {enabled: null}
  predict_concurrency: 3
  remote_ssh: {enabled: false}
  streaming_read_timeout: 60
  transport: {kind: http}
  truss_server_version_override: null
secrets: {}
spec_version: '2.0'
system_packages: []
training_checkpoints: null
trt_llm: null
use_local_src: false
weights: []
"""


def test_defaults_for_a_bare_directory(tmp_path: Path) -> None:
    config = load_model_config(tmp_path)
    assert config.model_name == tmp_path.name
    assert config.model_file == tmp_path / "model" / "model.py"
    assert config.runtime.predict_concurrency == 1
    assert config.runtime.max_request_bytes == 64 * MiB


def test_client_limits_have_defaults_and_null_turns_each_off(tmp_path: Path) -> None:
    runtime = load_model_config(tmp_path).runtime
    assert (runtime.max_queue, runtime.idle_timeout_s, runtime.body_idle_timeout_s,
            runtime.body_timeout_s, runtime.write_timeout_s, runtime.max_body_memory_bytes) \
        == (256, 30.0, 30.0, 300.0, 60.0, 512 * MiB)
    keys = ("max_queue", "idle_timeout_s", "body_idle_timeout_s", "body_timeout_s",
            "write_timeout_s")
    off = parse_model_config(tmp_path, {"runtime": dict.fromkeys(keys)}).runtime
    assert [getattr(off, key) for key in keys] == [None] * len(keys)
    set_ = parse_model_config(tmp_path, {"runtime": {"write_timeout_s": 5}}).runtime
    assert set_.write_timeout_s == 5.0


def test_truss_build_keys_are_accepted(tmp_path: Path) -> None:
    config = parse_model_config(tmp_path, {"requirements": ["x"], "resources": {"cpu": "1"},
                                           "runtime": {"predict_concurrency": 4,
                                                       "streaming_read_timeout": 60}})
    assert config.runtime.predict_concurrency == 4
    assert config.ignored_keys == ("requirements", "resources")


def test_the_config_truss_init_writes_loads(tmp_path: Path) -> None:
    config = parse_model_config(tmp_path, yaml.safe_load(TRUSS_INIT_CONFIG))
    assert config.model_name == "My Model"
    assert config.ignored_keys == ("python_version", "resources")


def test_every_truss_key_is_accepted_and_the_platform_ones_are_ignored(tmp_path: Path) -> None:
    config = parse_model_config(tmp_path, yaml.safe_load(TRUSS_VERBOSE_CONFIG))
    assert config.runtime.predict_concurrency == 3
    assert config.ignored_keys == (
        "apply_library_patches", "base_image", "bis_llm", "build", "build_commands",
        "cache_internal", "description", "docker_server", "examples_filename", "external_data",
        "input_type", "live_reload", "model_cache", "model_framework", "model_type",
        "python_version", "requirements", "requirements_file", "resources", "spec_version",
        "system_packages", "training_checkpoints", "trt_llm", "use_local_src", "weights",
        "runtime.egress_restrictions", "runtime.enable_debug_logs", "runtime.enable_tracing_data",
        "runtime.health_checks", "runtime.is_websocket_endpoint", "runtime.oidc",
        "runtime.remote_ssh", "runtime.truss_server_version_override",
    )  # runtime.transport is acted on: the WebSocket pings (daemon/http/session.py)


def test_truss_legacy_keys_are_accepted(tmp_path: Path) -> None:
    config = parse_model_config(tmp_path, {"hf_cache": [], "runtime": {"num_workers": 1}})
    assert config.ignored_keys == ("hf_cache", "runtime.num_workers")


def test_twinserve_keys_are_not_reported_as_ignored(tmp_path: Path) -> None:
    raw = {"server": {"log_format": "json"}, "engine": {"backend": "simulated"},
           "runtime": {"max_queue": 8, "predict_concurrency": 2}, "model_metadata": {"a": 1}}
    assert parse_model_config(tmp_path, raw).ignored_keys == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modle_name": "x"}, "modle_name: unknown key"),
        ({"output_type": "Any"}, "output_type: unknown key"),
        ({"runtime": {"num_workers": 2}}, "runtime.num_workers: only 1 is allowed"),
        ({"external_package_dirs": "libs"}, "external_package_dirs: expected a list"),
        ({"external_package_dirs": [3]}, r"external_package_dirs\[0\]: expected a non-empty str"),
        ({"external_package_dirs": ["missing"]}, r"external_package_dirs\[0\]: no directory at"),
        ({"environment_variables": {"A": None}}, "environment_variables.A: expected a string"),
        ({"environment_variables": {"A": [1]}}, "environment_variables.A: expected a string"),
        ({"environment_variables": {"A=B": "x"}}, "environment_variables: 'A=B' is not a var"),
        ({"environment_variables": {1: "x"}}, "environment_variables: 1 is not a variable"),
        ({"runtime": {"predict_concurency": 2}}, "runtime.predict_concurency: unknown key"),
        ({"runtime": {"max_request_bytes": 0}}, "runtime.max_request_bytes: expected a positive"),
        ({"runtime": []}, "runtime: expected a mapping"),
        ({"runtime": {"idle_timeout_s": 0}}, "runtime.idle_timeout_s: expected a positive"),
        ({"runtime": {"max_body_memory_bytes": "lots"}},
         "runtime.max_body_memory_bytes: expected a positive integer"),
        ({"secrets": {"a": ["b"]}}, "secrets.a: expected a string"),
        ({"model_class_name": ""}, "model_class_name: expected a non-empty string"),
        ({"engine": {"backend": "hf", "threads": 0}}, "engine.threads: expected a positive"),
        ({"engine": {"backend": "hf", "threads": "all"}}, "engine.threads: expected a positive"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_config(tmp_path, raw)


def test_engine_threads_default_to_torchs_own_choice(tmp_path: Path) -> None:
    engine = parse_model_config(tmp_path, {"engine": {"backend": "hf"}}).engine
    assert engine is not None and engine.threads is None
    engine = parse_model_config(tmp_path, {"engine": {"backend": "hf", "threads": 3}}).engine
    assert engine is not None and engine.threads == 3


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("runtime: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_model_config(tmp_path)


def test_secrets_take_env_overrides_and_hide_values() -> None:
    secrets = Secrets({"hf-token": "default", "other": None}, {secret_env_name("hf-token"): "env"})
    assert secrets["hf-token"] == "env"
    assert list(secrets) == ["hf-token"]
    assert "env" not in repr(secrets)
    with pytest.raises(KeyError, match="TWINSERVE_SECRET_OTHER"):
        secrets["other"]
    with pytest.raises(KeyError, match="not declared"):
        secrets["nope"]


def test_environment_variables_are_stringified_as_truss_does(tmp_path: Path) -> None:
    raw = {"environment_variables": {"S": "x", "T": True, "F": False, "I": 0, "R": 1.5}}
    assert parse_model_config(tmp_path, raw).environment_variables \
        == {"S": "x", "T": "true", "F": "false", "I": "0", "R": "1.5"}


def test_external_package_dirs_resolve_against_the_model_directory(tmp_path: Path) -> None:
    model = tmp_path / "truss"
    (tmp_path / "shared").mkdir()
    (model / "vendor").mkdir(parents=True)
    config = parse_model_config(
        model, {"external_package_dirs": ["../shared", str(model / "vendor")]})
    assert config.package_dirs == (model / "packages", tmp_path / "shared", model / "vendor")


def test_apply_to_process_sets_variables_over_existing_ones_and_paths_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("TWINSERVE_TEST_VAR", "from-the-shell")
    (tmp_path / "ext").mkdir()
    config = parse_model_config(tmp_path, {"external_package_dirs": ["ext"],
                                           "environment_variables": {"TWINSERVE_TEST_VAR": 1}})
    apply_to_process(config)
    apply_to_process(config)  # idempotent
    assert os.environ["TWINSERVE_TEST_VAR"] == "1"  # config.yaml wins, as in Truss
    expected = [str(p) for p in (tmp_path, tmp_path / "packages", tmp_path / "ext")]
    assert sys.path[:3] == expected


# -- through a real daemon ---------------------------------------------------------------


def _truss_init(root: Path, config: str = TRUSS_INIT_CONFIG, model: str = TRUSS_INIT_MODEL
                ) -> Path:
    for sub in ("model", "data", "packages"):
        (root / sub).mkdir(parents=True)
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "model.py").write_text(model)
    (root / "config.yaml").write_text(config)
    return root


def test_daemon_serves_the_truss_init_directory_and_names_ignored_keys(
        start_daemon_per_test: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon_per_test(_truss_init(tmp_path / "my-model"))
    assert httpx.post(f"{daemon.http_url}/predict", json={"x": 1}).json() == {"x": 1}
    daemon.wait_for_log(
        "INFO", "config.yaml: ignoring Truss build/platform keys: python_version, resources")


def test_daemon_applies_external_package_dirs_and_environment_variables_before_import(
        start_daemon_per_test: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "shared" / "sharedlib").mkdir(parents=True)
    (tmp_path / "shared" / "sharedlib" / "__init__.py").write_text("NAME = 'shared'\n")
    config = TRUSS_INIT_CONFIG + (
        "external_package_dirs:\n- ../shared\n"
        "environment_variables:\n  TS_GREETING: from-config\n  TS_FLAG: true\n")
    model = (
        "import os\n\nimport sharedlib\n\n"
        "AT_IMPORT = {k: os.environ.get(k) for k in ('TS_GREETING', 'TS_FLAG')}\n\n\n"
        "class Model:\n"
        "    def predict(self, model_input):\n"
        "        return {'lib': sharedlib.NAME, 'env': AT_IMPORT}\n")
    daemon = start_daemon_per_test(_truss_init(tmp_path / "my-model", config, model),
                                   env={"TS_GREETING": "from-the-shell"})
    assert httpx.post(f"{daemon.http_url}/predict", json={}).json() == {
        "lib": "shared", "env": {"TS_GREETING": "from-config", "TS_FLAG": "true"}}


def test_daemon_refuses_a_key_truss_does_not_know(start_daemon_per_test: StartDaemon,
                                                  tmp_path: Path) -> None:
    config = TRUSS_INIT_CONFIG + "predict_concurrency: 4\n"  # belongs under runtime:
    daemon = start_daemon_per_test(_truss_init(tmp_path / "my-model", config), wait="none")
    assert daemon.wait_exit() == 1
    assert "predict_concurrency: unknown key in config.yaml" in daemon.log


def test_session_settings_have_defaults_and_truss_transport_keys(tmp_path: Path) -> None:
    runtime = load_model_config(tmp_path).runtime
    assert (runtime.transport.kind, runtime.transport.ping_interval_seconds,
            runtime.transport.ping_timeout_seconds, runtime.session_idle_timeout_s,
            runtime.max_frame_bytes) == ("http", 20.0, 20.0, 300.0, 16 * MiB)
    set_ = parse_model_config(tmp_path, {"runtime": {
        "transport": {"kind": "websocket", "ping_interval_seconds": 1,
                      "ping_timeout_seconds": None},
        "session_idle_timeout_s": None, "max_frame_bytes": 1024}}).runtime
    assert (set_.transport.kind, set_.transport.ping_interval_seconds,
            set_.transport.ping_timeout_seconds, set_.session_idle_timeout_s,
            set_.max_frame_bytes) == ("websocket", 1.0, None, None, 1024)


@pytest.mark.parametrize(("transport", "error"), [
    ({"kind": "carrier-pigeon"}, "runtime.transport.kind: expected one of http, websocket, grpc"),
    ({"kind": "http", "ping_interval_seconds": 1},
     "runtime.transport.ping_interval_seconds: unknown key for kind 'http'"),
    ({"kind": "websocket", "ping_timeout_seconds": -1},
     "runtime.transport.ping_timeout_seconds"),
    ("websocket", "runtime.transport: expected a mapping"),
])
def test_bad_transport_sections_name_the_key(tmp_path: Path, transport: Any,
                                             error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_model_config(tmp_path, {"runtime": {"transport": transport}})


def test_the_grpc_stream_limit_is_a_server_setting() -> None:
    flags = ServerConfig()
    assert with_server_section(flags, {}, {}).grpc_max_concurrent_streams == 256
    lowered = with_server_section(flags, {"grpc_max_concurrent_streams": 32}, {})
    assert lowered.grpc_max_concurrent_streams == 32
    with pytest.raises(ConfigError, match="server.grpc_max_concurrent_streams: expected a "
                                          "positive integer"):
        with_server_section(flags, {"grpc_max_concurrent_streams": 0}, {})
