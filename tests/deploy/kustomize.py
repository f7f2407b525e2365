"""`kustomize build` for the part of Kustomize that deploy/k8s uses, in plain Python, so the
suite renders the manifests offline with nothing but PyYAML (CI's machines have no kubectl).

Understood: `resources` (files and directories holding a kustomization.yaml), `images`
(newName, newTag, digest) and `patches` given by `path` or inline `patch` as strategic merge
patches naming their target by kind and metadata.name. Anything else in a kustomization is
refused, so a manifest change this renderer would get wrong fails loudly. Where kubectl is
installed, tests/deploy/test_manifests.py checks the output equals `kubectl kustomize`'s.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

_KNOWN_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}
# The strategic-merge keys of the lists deploy/k8s patches (the Kubernetes API's
# patchMergeKey); any other list in a patch replaces the original, as in Kubernetes.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
# Lists whose merge key depends on where they are (a container's ports merge by
# containerPort, a Service's by port): refused in patches rather than guessed.
_AMBIGUOUS = {"ports"}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not do."""


def build(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` outputs, in the order they were listed
    (kustomize sorts them by kind: compare by (kind, name))."""
    path = directory / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{path}: {', '.join(sorted(unknown))} not supported here")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind {spec['kind']!r}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources += build(target)
        else:
            resources += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for patch in spec.get("patches", []):
        _apply_patch(resources, _patch_body(directory, patch))
    for image in spec.get("images", []):
        _set_image(resources, image)
    return resources


def _patch_body(directory: Path, patch: dict[str, Any]) -> Resource:
    if set(patch) == {"path"}:
        body = yaml.safe_load((directory / patch["path"]).read_text())
    elif set(patch) == {"patch"}:
        body = yaml.safe_load(patch["patch"])
    else:
        raise KustomizeError(f"patch {patch}: only `path` or `patch`, without `target`")
    if not isinstance(body, dict):
        raise KustomizeError(f"patch {patch}: not one strategic merge patch")
    return body


def _apply_patch(resources: list[Resource], patch: Resource) -> None:
    key = (patch["kind"], patch["metadata"]["name"])
    matches = [r for r in resources if (r["kind"], r["metadata"]["name"]) == key]
    if len(matches) != 1:
        raise KustomizeError(f"patch for {key}: {len(matches)} resources match")
    merged = _merge(matches[0], patch)
    matches[0].clear()
    matches[0].update(merged)


def _merge(original: Any, patch: Any, field: str = "") -> Any:
    if isinstance(original, dict) and isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise KustomizeError(f"{field}: patch directives are not supported here")
        out = dict(original)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if field in _AMBIGUOUS:
        raise KustomizeError(f"{field}: patching this list is not supported here")
    if isinstance(original, list) and isinstance(patch, list) and field in _MERGE_KEYS:
        key = _MERGE_KEYS[field]
        by_key = {item[key]: item for item in original}
        # kustomize (kyaml) puts the patch's new items first, then the original's in order.
        added = [copy.deepcopy(item) for item in patch if item[key] not in by_key]
        patched = {item[key]: item for item in patch if item[key] in by_key}
        return added + [_merge(item, patched[item[key]], field) if item[key] in patched
                        else item for item in original]
    return copy.deepcopy(patch)


def _set_image(resources: list[Resource], image: dict[str, str]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images: {', '.join(sorted(unknown))} not supported here")
    for container in _containers(resources):
        name = _image_name(container["image"])
        if name != image["name"]:
            continue
        reference = image.get("newName", name)
        if "digest" in image:
            reference += "@" + image["digest"]
        elif "newTag" in image:
            reference += ":" + image["newTag"]
        else:
            reference = container["image"].replace(name, reference, 1)
        container["image"] = reference


def _image_name(reference: str) -> str:
    """`registry:5000/name:tag@digest` -> `registry:5000/name`."""
    reference = reference.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return reference[: len(reference) - len(last)] + last.split(":", 1)[0]


def _containers(resources: list[Resource]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in resources:
        pod = resource.get("spec", {}).get("template", {}).get("spec", {})
        found += pod.get("initContainers", []) + pod.get("containers", [])
    return found
