"""deploy/k8s and deploy/kserve: each overlay renders (tests/deploy/kustomize.py, the same
output as `kubectl kustomize` where kubectl is installed) and every resource validates against
the Kubernetes schemas, offline; the settings that must agree with the daemon and the image
(ports, probes, drain timing, writable paths, the autoscaling metric) do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2

from daemon.cli import BUILTIN_LLM_DIR
from daemon.config import load_model_config
from daemon.metrics import Metrics
from tests.conftest import StartDaemon
from tests.deploy import dockerfile, kustomize, schemas
from tests.harness import EXAMPLES, REPO

K8S = REPO / "deploy" / "k8s"
KSERVE = REPO / "deploy" / "kserve"
OVERLAYS = ("cpu", "gpu")
# The kubelet's own work after the daemon's drain (cancellation, the engine's close, exit).
MARGIN_S = 5


def _render(overlay: str) -> dict[tuple[str, str], dict[str, Any]]:
    resources = kustomize.build(K8S / "overlays" / overlay)
    by_key = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    assert len(by_key) == len(resources), "two resources with one kind and name"
    return by_key


def _kserve() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for path in sorted(KSERVE.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc}


def _pod(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return dict(rendered[("Deployment", "twinserve")]["spec"]["template"]["spec"])


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's one container (a Deployment's pod spec or a ServingRuntime's spec)."""
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.mark.parametrize("version", schemas.VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str, version: str) -> None:
    rendered = _render(overlay)
    assert set(rendered) == {(kind, "twinserve") for kind in (
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "ServiceMonitor")}
    for resource in rendered.values():
        schemas.validate(resource, version)


@pytest.mark.parametrize("version", schemas.VERSIONS)
def test_kserve_examples_validate(version: str) -> None:
    resources = _kserve()
    assert set(resources) == {"ServingRuntime", "InferenceService"}
    for resource in resources.values():
        schemas.validate(resource, version)


def test_validation_catches_a_misspelt_field() -> None:
    """The check above is worth something: strict schemas, built-in and custom alike."""
    deployment = _render("cpu")[("Deployment", "twinserve")]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    runtime = _kserve()["ServingRuntime"]
    runtime["spec"]["supportedModelFormat"] = []
    for resource in (deployment, runtime):
        with pytest.raises(AssertionError, match="supportedModelFormat|readinessprobe"):
            schemas.validate(resource, schemas.VERSIONS[-1])


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed: the renderer is checked against it "
                           "where it is (apt-get install kubectl)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_kubectl_kustomize(overlay: str) -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = {(r["kind"], r["metadata"]["name"]): r
              for r in yaml.safe_load_all(result.stdout) if r}
    assert theirs == _render(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_match_the_daemon_settings(overlay: str) -> None:
    rendered = _render(overlay)
    container = _container(_pod(rendered))
    env = _env(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["TWINSERVE_HTTP_PORT"]),
                     "grpc": int(env["TWINSERVE_GRPC_PORT"])}
    assert env["TWINSERVE_HOST"] == "0.0.0.0"
    assert container["startupProbe"]["grpc"] == {"port": ports["grpc"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    service = rendered[("Service", "twinserve")]["spec"]
    assert {(p["name"], p["targetPort"], p["appProtocol"]) for p in service["ports"]} == {
        ("http", "http", "http"), ("grpc", "grpc", "kubernetes.io/h2c")}


def test_the_probes_answer_on_a_real_daemon(start_daemon: StartDaemon) -> None:
    """What the manifests probe exists: HTTP /health/live and /health/ready, and the gRPC
    health service a `grpc:` probe calls (service "")."""
    daemon = start_daemon(EXAMPLES / "echo")
    container = _container(_pod(_render("cpu")))
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert httpx.get(f"{daemon.http_url}{path}", timeout=5).status_code == 200
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        answer = check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_termination_grace_covers_the_drain() -> None:
    """The kubelet must not kill a pod that is still draining: preStop's sleep, then the
    daemon's drain grace and drain timeout (the embedded model's: the image serves it)."""
    runtime = load_model_config(BUILTIN_LLM_DIR).runtime
    drain_s = runtime.drain_grace_s + runtime.drain_timeout_s
    pods = [_pod(_render(overlay)) for overlay in OVERLAYS]
    kserve = _kserve()
    runtime_pod = kserve["ServingRuntime"]["spec"]
    isvc = kserve["InferenceService"]["spec"]["predictor"]
    for pod, grace in [(pod, pod["terminationGracePeriodSeconds"]) for pod in pods] + [
            (runtime_pod, isvc["terminationGracePeriodSeconds"])]:
        pre_stop = _container(pod)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert grace >= pre_stop + drain_s + MARGIN_S


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_the_image_user_on_a_read_only_root(overlay: str) -> None:
    pod = _pod(_render(overlay))
    container = _container(pod)
    image = dockerfile.read(dockerfile.IMAGES[overlay])
    uid = int(dockerfile.arguments(image, "USER")[-1].split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    # Every path the image sends writes to is a volume; the model's cache is not one.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= set(volumes)
    env = dockerfile.env(image)
    writable = {"/tmp", *(env[n] for n in ("HOME", "XDG_CACHE_HOME", "HF_HOME",
                                           "TRITON_CACHE_DIR") if n in env)}
    for path in writable:
        if path == env["HOME"] and overlay == "cpu":
            continue  # the CPU image never writes HOME (tests/deploy/test_image.py)
        assert any(path == m or path.startswith(m + "/") for m in mounts), path
    assert not any(env["TWINSERVE_CACHE_DIR"].startswith(m) for m in mounts)


def test_gpu_overlay_runs_vllm_on_a_gpu_node() -> None:
    rendered = _render("gpu")
    pod = _pod(rendered)
    container = _container(pod)
    assert container["image"] == "twinserve:gpu"
    assert _env(container)["TWINSERVE_BACKEND"] == "vllm"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"]
    metrics = rendered[("HorizontalPodAutoscaler", "twinserve")]["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"]
    cpu = _container(_pod(_render("cpu")))
    assert cpu["image"] == "twinserve:cpu" and "TWINSERVE_BACKEND" not in _env(cpu)
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})


def test_autoscaling_metric_is_one_the_daemon_exports_and_prometheus_scrapes() -> None:
    rendered = _render("cpu")
    hpa = rendered[("HorizontalPodAutoscaler", "twinserve")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "twinserve"
    pods_metrics = {m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"}
    assert {m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"} == {"cpu"}
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in rules["rules"]["custom"]}
    exported = {family.name for family in Metrics().registry.collect()}
    assert pods_metrics == {"twinserve_queue_depth"} and pods_metrics <= served <= exported
    for rule in rules["rules"]["custom"]:
        assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    # The ServiceMonitor finds the Service and scrapes its HTTP port's /metrics.
    monitor = rendered[("ServiceMonitor", "twinserve")]["spec"]
    service = rendered[("Service", "twinserve")]
    labels = service["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("http", "/metrics")]
    deployment = rendered[("Deployment", "twinserve")]["spec"]
    pdb = rendered[("PodDisruptionBudget", "twinserve")]["spec"]
    assert service["spec"]["selector"] == deployment["selector"]["matchLabels"] \
        == pdb["selector"]["matchLabels"] == deployment["template"]["metadata"]["labels"]


def test_kserve_runtime_uses_kserves_ports() -> None:
    """KServe sends HTTP to 8080 and, in Standard mode, exposes a second port named h2c as
    gRPC (appProtocol kubernetes.io/h2c); Knative mode exposes only one port."""
    resources = _kserve()
    runtime = resources["ServingRuntime"]
    container = _container(runtime["spec"])
    assert container["name"] == "kserve-container"
    env = _env(container)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8080), ("h2c", 8081)]
    assert (env["TWINSERVE_HTTP_PORT"], env["TWINSERVE_GRPC_PORT"]) == ("8080", "8081")
    assert container["startupProbe"]["grpc"]["port"] == 8081
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    isvc = resources["InferenceService"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f
                                            in runtime["spec"]["supportedModelFormats"]}


def test_the_renderer_refuses_what_it_does_not_do(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(kustomize.KustomizeError, match="commonLabels"):
        kustomize.build(tmp_path)
