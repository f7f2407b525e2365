"""Validate rendered manifests offline: built-in kinds against the Kubernetes JSON schemas
that `kubernetes-validate` bundles (strict: an unknown field is an error), custom resources
against the small schemas below.

The custom resources' schemas are ours, written from the fields their CRDs define
(prometheus-operator's monitoring.coreos.com_servicemonitors.yaml, KServe's
serving.kserve.io_servingruntimes.yaml and _inferenceservices.yaml) for the fields we use:
every object closed (additionalProperties false) so a misspelt field fails, types and enums
as the CRDs give them, and the Kubernetes types they embed (Container, Volume, Toleration,
LabelSelector, ObjectMeta) checked against the bundled Kubernetes definitions. A field we
start using must be added here, which is the point: it gets looked up in the CRD first.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

# The oldest Kubernetes the manifests claim (the preStop `sleep` action is on by default from
# 1.30) and the newest kubernetes-validate knows.
VERSIONS = ("1.30", "1.37")

_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"


def _k8s(name: str) -> dict[str, Any]:
    return {"$ref": _DEFS + name}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


_STRING = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                          r"(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _closed({
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        "metadata": _k8s("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": spec,
    }, ("apiVersion", "kind", "metadata", "spec"))


_POD_PARTS = {
    "containers": {"type": "array", "items": _k8s("io.k8s.api.core.v1.Container")},
    "volumes": {"type": "array", "items": _k8s("io.k8s.api.core.v1.Volume")},
    "nodeSelector": _STRING_MAP,
    "tolerations": {"type": "array", "items": _k8s("io.k8s.api.core.v1.Toleration")},
    "affinity": _k8s("io.k8s.api.core.v1.Affinity"),
}

CUSTOM: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1", "ServiceMonitor", _closed({
            "selector": _k8s("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
            "namespaceSelector": _closed({"any": _BOOL, "matchNames": {
                "type": "array", "items": _STRING}}),
            "jobLabel": _STRING,
            "endpoints": {"type": "array", "items": _closed({
                "port": _STRING,
                "path": _STRING,
                "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                "interval": _DURATION,
                "scrapeTimeout": _DURATION,
            })},
        }, ("endpoints", "selector"))),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): _resource(
        "serving.kserve.io/v1alpha1", "ServingRuntime", _closed({
            "supportedModelFormats": {"type": "array", "items": _closed({
                "name": _STRING, "version": _STRING, "autoSelect": _BOOL,
                "priority": {"type": "integer", "minimum": 1},
            }, ("name",))},
            "protocolVersions": {"type": "array", "items": {
                "enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
            "annotations": _STRING_MAP,
            "labels": _STRING_MAP,
            "multiModel": _BOOL,
            "disabled": _BOOL,
            **_POD_PARTS,
        }, ("containers",))),
    ("serving.kserve.io/v1beta1", "InferenceService"): _resource(
        "serving.kserve.io/v1beta1", "InferenceService", _closed({
            "predictor": _closed({
                "minReplicas": _INT32,
                "maxReplicas": _INT32,
                "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                "scaleTarget": _INT32,
                "terminationGracePeriodSeconds": {"type": "integer"},
                "model": _closed({
                    "modelFormat": _closed({"name": _STRING, "version": _STRING}, ("name",)),
                    "runtime": _STRING,
                    "storageUri": _STRING,
                    "env": {"type": "array", "items": _k8s("io.k8s.api.core.v1.EnvVar")},
                    "resources": _k8s("io.k8s.api.core.v1.ResourceRequirements"),
                }, ("modelFormat",)),
                **_POD_PARTS,
            }),
        }, ("predictor",))),
}


def validate(resource: dict[str, Any], version: str) -> None:
    """Raise AssertionError naming the resource, the field and the problem."""
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    try:
        if key in CUSTOM:
            validator = jsonschema.Draft202012Validator(CUSTOM[key], registry=_registry(version))
            validator.validate(resource)
        else:
            kubernetes_validate.validate(resource, version, strict=True)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(part) for part in exc.absolute_path)
        raise AssertionError(f"{name} (Kubernetes {version}): {where}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(f"{name}: no schema: {exc.message}") from exc


@cache
def _registry(version: str) -> Registry[Any]:
    """The Kubernetes definitions of `version`, where the custom schemas' $refs point."""
    folder = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
              / f"v{version}.0-local-strict")
    definitions: dict[str, Any] = json.loads((folder / "_definitions.json").read_text())
    resource: Resource[Any] = Resource.from_contents(definitions)
    empty: Registry[Any] = Registry()
    return empty.with_resources([(str(definitions["$id"]), resource)])
