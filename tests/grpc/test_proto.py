"""The committed protobuf modules match proto/, and the service binding matches the proto."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import REPO
from twinserve_wire import service
from twinserve_wire.proto.v1 import model_pb2


def test_generated_modules_are_fresh() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_methods_exist_with_expected_streaming() -> None:
    methods = model_pb2.DESCRIPTOR.services_by_name["ModelService"].methods_by_name
    assert not methods[service.PREDICT].server_streaming
    assert methods[service.PREDICT_STREAM].server_streaming
    assert service.method_path(service.PREDICT) == "/twinserve.v1.ModelService/Predict"


def test_large_integers_survive_the_json_payload() -> None:
    body = b'{"n": 123456789012345678901234567890}'
    message = model_pb2.PredictRequest.FromString(
        model_pb2.PredictRequest(route="predict", json=body).SerializeToString())
    assert message.json == body
