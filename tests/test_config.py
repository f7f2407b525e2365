from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import MiB, load_model_config, parse_model_config, secret_env_name
from daemon.errors import ConfigError
from daemon.model.loader import Secrets


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


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modle_name": "x"}, "modle_name: unknown key"),
        ({"runtime": {"predict_concurency": 2}}, "runtime.predict_concurency: unknown key"),
        ({"runtime": {"max_request_bytes": 0}}, "runtime.max_request_bytes: expected a positive"),
        ({"runtime": []}, "runtime: expected a mapping"),
        ({"runtime": {"idle_timeout_s": 0}}, "runtime.idle_timeout_s: expected a positive"),
        ({"runtime": {"max_body_memory_bytes": "lots"}},
         "runtime.max_body_memory_bytes: expected a positive integer"),
        ({"secrets": {"a": ["b"]}}, "secrets.a: expected a string"),
        ({"model_class_name": ""}, "model_class_name: expected a non-empty string"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_config(tmp_path, raw)


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
