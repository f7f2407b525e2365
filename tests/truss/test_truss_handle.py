"""Truss's TrussHandle tests (basetenlabs/truss `truss/tests/test_truss_handle.py`), the part
about a serving model: what a running server answers to predict. Truss runs each model
in-process (`predict`, `server_predict`) or in a container (`docker_predict`); here it runs
in a real twinserve daemon and the same input goes to `POST /v1/models/model:predict`.

Each test keeps Truss's name, model source (Truss's conftest's `*_CODE` constants) and
assertions. Truss's fixtures build the truss with `init_directory`, whose config.yaml holds
`python_version` and `resources`; that config is kept (twinserve ignores both). Adaptations:
- `docker_predict` retries its request while the server answers 503 or cannot be reached
  (up to 20 s); `_docker_predict` does the same. `predict` / `server_predict` post once.
- test_docker_long_load: load() sleeps 2 s instead of Truss's 10.
- test_docker_predict_secrets: Truss's local secret (`LocalConfigHandler.set_secret`)
  is twinserve's `TWINSERVE_SECRET_<NAME>` environment variable.
- test_docker_multiple_predict: the check that one container served both calls is dropped
  (one daemon serves them here by construction).

Not ported (Docker images and containers, the TrussHandle API, patching):
- test_spec, test_description, test_readme_generation_int_example,
  test_readme_generation_no_example, test_readme_generation_str_example, test_examples,
  test_add_example_new, test_add_example_update, test_update_python_version[*],
  test_update_requirements, test_update_requirements_from_file, test_add_data_file,
  test_add_data_fileglob, test_add_data_dir, test_config_verbose: TrussHandle's editing of
  the truss directory and its config; no server involved.
- test_build_docker_image, test_build_docker_image_gpu, test_build_docker_image_control_gpu,
  test_build_serving_docker_image_from_user_base_image_live_reload[*]: image builds.
- test_docker_predict_custom_base_image: a custom Docker base image.
- test_docker_run, test_docker_run_gpu, test_docker_run_without_tag,
  get_docker_containers_from_labels, test_kill_all, test_handle_if_container_dne,
  test_docker_predict_container_does_not_exist, test_container_oom_caught_during_waiting,
  test_container_stuck_in_created: container lifecycle and states.
- test_docker_predict_gpu: needs a GPU and nvcc in the image (skipped in Truss too).
- test_custom_python_requirement, test_custom_system_package, test_build_commands,
  test_build_commands_failure: packages and commands installed at image build.
- test_add_environment_variable: inspects the container's environment with `docker exec`;
  its model never reads it, so no answer shows it.
- test_external_data, test_external_data_gpu: `external_data` downloaded at image build.
- test_control_truss_apply_patch, test_regular_truss_local_update_flow,
  test_control_truss_local_update_that_crashes_inference_server, test_patch_ping_flow[*]:
  Truss's control server (live reload, code patches, patch ping) and image rebuilds.
- test_truss_hash_caching_based_on_max_mod_time: TrussHandle's image-label hash cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import DaemonProcess
from tests.truss.conftest import TrussServer

# The config.yaml Truss's `init_directory` writes (`python_version` follows the host).
DEFAULT_CONFIG = """
python_version: py311
resources:
  accelerator: null
  cpu: '1'
  memory: 2Gi
  use_gpu: false
"""

CUSTOM_MODEL_CODE = """
class Model:
    def __init__(*args, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        return [1 for i in model_input]
"""

CUSTOM_MODEL_USING_EXTERNAL_PACKAGE_CODE = """
import top_module
import subdir.sub_module
import top_module2
class Model:
    def predict(self, model_input):
        return [1 for i in model_input]
"""

CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS = """
class Model:
    def __init__(*args, **kwargs):
        pass

    def load(*args, **kwargs):
        pass

    def preprocess(self, model_input):
        # Adds 1 to all
        return [value + 1 for value in model_input]

    def predict(self, model_input):
        # Returns inputs as predictions
        return {
            'predictions': model_input,
        }

    def postprocess(self, model_output):
        # Adds 2 to all
        return {
            'predictions': [value + 2 for value in model_output['predictions']],
        }
"""

CUSTOM_MODEL_CODE_USING_BUNDLED_PACKAGE = """
from test_package import test

class Model:
    def predict(self, request):
        # Returns inputs as predictions
        return {
            'predictions': [test.X],
        }

"""

CUSTOM_MODEL_CODE_FOR_SECRETS_TESTING = """
import subprocess

class Model:
    def __init__(self, secrets):
        self._secrets = secrets

    def predict(self, request):
        # Expects instance to be secret name and returns secret value as prediction
        secret_name = request['instances'][0]
        return {
            'predictions': [self._secrets[secret_name]],
        }
"""

# Doesn't implement load
NO_LOAD_CUSTOM_MODEL_CODE = """
class Model:
    def preprocess(self, request):
        return request

    def postprocess(self, request):
        return request

    def predict(self, request):
        return {
            'predictions': [1]
        }
"""

# Truss's load() sleeps 10 s; 2 s here keep the module fast and still outlast a start.
LONG_LOAD_MODEL_CODE = """
import time
class Model:
     def load(*args, **kwargs):
        time.sleep(2)
        pass

     def predict(self, model_input):
        return {
            'predictions': model_input,
        }
"""

# Doesn't implement preprocess
NO_PREPROCESS_CUSTOM_MODEL_CODE = """
class Model:
     def load(*args, **kwargs):
        pass

     def postprocess(self, request):
        # Adds 1 to all
        return {
            'predictions': [value + 1 for value in request['predictions']],
        }

     def predict(self, model_input):
        return {
            'predictions': model_input,
        }
"""

# Doesn't implement postprocess
NO_POSTPROCESS_CUSTOM_MODEL_CODE = """
class Model:
     def load(*args, **kwargs):
        pass

     def preprocess(self, model_input):
        # Adds 1 to all
        return [value + 1 for value in model_input]

     def predict(self, model_input):
        return {
            'predictions': model_input,
        }
"""

# Implements no params for init
NO_PARAMS_INIT_CUSTOM_MODEL_CODE = """
class Model:
     def __init__(self):
        pass

     def preprocess(self, request):
        return request

     def postporcess(self, request):
        return request

     def predict(self, model_input):
        return {
            'predictions': model_input,
        }
"""


def _predict_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model:predict"


def _predict(daemon: DaemonProcess, request: Any) -> Any:
    """TrussHandle.predict / server_predict: the model's answer to `request`."""
    response = httpx.post(_predict_url(daemon), json=request)
    assert response.status_code == 200, response.text
    return response.json()


def _docker_predict(daemon: DaemonProcess, request: Any) -> Any:
    """TrussHandle.docker_predict: retried while the server answers 503 or is unreachable
    (every 1 s for up to 20 s in Truss; every 0.1 s here)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            response = httpx.post(_predict_url(daemon), json=request)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
        except httpx.ConnectError:
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    return response.json()


def _external_package_truss(tmp_path: Path, truss_server: TrussServer) -> DaemonProcess:
    """Truss's `custom_model_with_external_package` fixture: two package directories outside
    the truss, one named by absolute path, one relative to the truss directory."""
    ext_pkg_path = tmp_path / "ext_pkg"
    ext_pkg_path.mkdir()
    (ext_pkg_path / "subdir").mkdir()
    (ext_pkg_path / "subdir" / "sub_module.py").touch()
    (ext_pkg_path / "top_module.py").touch()
    ext_pkg_path2 = tmp_path / "ext_pkg2"
    ext_pkg_path2.mkdir()
    (ext_pkg_path2 / "top_module2.py").touch()
    # `truss_server` writes the truss to tmp_path/truss1: "../ext_pkg2" is ext_pkg_path2.
    config = DEFAULT_CONFIG + (f"external_package_dirs:\n- {ext_pkg_path.resolve()}\n"
                               "- ../ext_pkg2\n")
    return truss_server(CUSTOM_MODEL_USING_EXTERNAL_PACKAGE_CODE, config)


def test_predict(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS, DEFAULT_CONFIG)
    resp = _predict(daemon, [1, 2, 3, 4])
    assert resp == {"predictions": [4, 5, 6, 7]}


def test_predict_with_external_packages(tmp_path: Path, truss_server: TrussServer) -> None:
    daemon = _external_package_truss(tmp_path, truss_server)
    resp = _predict(daemon, [1, 2, 3, 4])
    assert resp == [1, 1, 1, 1]


def test_server_predict(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS, DEFAULT_CONFIG)
    resp = _predict(daemon, [1, 2, 3, 4])
    assert resp == {"predictions": [4, 5, 6, 7]}


def test_predict_use_docker(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1, 2])
    assert result == {"predictions": [4, 5]}


def test_docker_predict(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1, 2])
    assert result == {"predictions": [4, 5]}


def test_docker_predict_model_with_external_packages(tmp_path: Path,
                                                     truss_server: TrussServer) -> None:
    daemon = _external_package_truss(tmp_path, truss_server)
    result = _docker_predict(daemon, [1, 2])
    assert result == [1, 1]


def test_docker_predict_with_bundled_packages(truss_server: TrussServer) -> None:
    # Truss's fixture: packages/test_package/test.py in the truss (bundled_packages_dir).
    daemon = truss_server(CUSTOM_MODEL_CODE_USING_BUNDLED_PACKAGE, DEFAULT_CONFIG,
                          files={"packages/test_package/test.py": "X = 1"})
    result = _docker_predict(daemon, [1, 2])
    assert result == {"predictions": [1]}


def test_docker_multiple_predict(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE_WITH_PRE_AND_POST_PROCESS, DEFAULT_CONFIG)
    r1 = _docker_predict(daemon, [1, 2])
    r2 = _docker_predict(daemon, [3, 4])
    assert r1 == {"predictions": [4, 5]}
    assert r2 == {"predictions": [6, 7]}


def test_docker_predict_secrets(truss_server: TrussServer) -> None:
    # Truss: th.add_secret("secret_name", "default_secret_value"), then the local value
    # LocalConfigHandler.set_secret("secret_name", "secret_value").
    config = DEFAULT_CONFIG + "secrets:\n  secret_name: default_secret_value\n"
    daemon = truss_server(CUSTOM_MODEL_CODE_FOR_SECRETS_TESTING, config,
                          env={"TWINSERVE_SECRET_SECRET_NAME": "secret_value"})
    result = _docker_predict(daemon, {"instances": ["secret_name"]})
    assert result["predictions"][0] == "secret_value"


def test_docker_no_preprocess_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_PREPROCESS_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1])
    assert result["predictions"][0] == 2


def test_docker_long_load(truss_server: TrussServer) -> None:
    # docker_predict waits out the load: the server answers 503 until load() returns.
    daemon = truss_server(LONG_LOAD_MODEL_CODE, DEFAULT_CONFIG, wait="listening")
    result = _docker_predict(daemon, [1])
    assert result["predictions"][0] == 1


def test_local_no_preprocess_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_PREPROCESS_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _predict(daemon, [1])
    assert result["predictions"][0] == 2


def test_docker_no_postprocess_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_POSTPROCESS_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1])
    assert result["predictions"][0] == 2


def test_local_no_postprocess_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_POSTPROCESS_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _predict(daemon, [1])
    assert result["predictions"][0] == 2


def test_docker_no_load_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_LOAD_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1])
    assert result["predictions"][0] == 1


def test_local_no_load_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_LOAD_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _predict(daemon, [1])
    assert result["predictions"][0] == 1


def test_docker_no_params_init_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_PARAMS_INIT_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _docker_predict(daemon, [1])
    assert result["predictions"][0] == 1


def test_local_no_params_init_custom_model(truss_server: TrussServer) -> None:
    daemon = truss_server(NO_PARAMS_INIT_CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    result = _predict(daemon, [1])
    assert result["predictions"][0] == 1


def test_model_without_pre_post(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    resp = _predict(daemon, [1, 2, 3, 4])
    assert resp == [1, 1, 1, 1]


def test_docker_predict_model_without_pre_post(truss_server: TrussServer) -> None:
    daemon = truss_server(CUSTOM_MODEL_CODE, DEFAULT_CONFIG)
    resp = _docker_predict(daemon, [1, 2, 3, 4])
    assert resp == [1, 1, 1, 1]
