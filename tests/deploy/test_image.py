"""The container images (deploy/docker), which cannot be built here: their install step is
scripts/install.sh, the one CI runs, and their entry command, started here from the image's
environment alone on a read-only root filesystem, serves the embedded model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from daemon.config import default_cache_dir
from tests.conftest import StartDaemon
from tests.deploy import dockerfile
from tests.harness import REPO

IMAGE_ROOT = "/opt/twinserve"  # the image's WORKDIR: the repository's place
VOLUME = "/var/cache/twinserve"  # the writable cache volume beside /tmp
VENV_BIN = Path(sys.executable).parent


def _install_commands(*flags: str) -> list[str]:
    result = subprocess.run(["bash", "scripts/install.sh", *flags], cwd=REPO, text=True,
                            capture_output=True, timeout=60,
                            env={**os.environ, "TWINSERVE_INSTALL_DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(("image", "flag"), [("cpu", "--image"), ("gpu", "--gpu")])
def test_images_install_through_scripts_install_sh(image: str, flag: str) -> None:
    steps = dockerfile.read(dockerfile.IMAGES[image])
    runs = dockerfile.arguments(steps, "RUN")
    assert f"scripts/install.sh {flag}" in runs
    # No second way in: every Python package comes from that one step.
    assert not [run for run in runs if "pip " in run or "pip3 " in run]
    assert dockerfile.arguments(steps, "WORKDIR") == [IMAGE_ROOT]


def test_image_installs_what_ci_installs_less_the_test_tools() -> None:
    ci = _install_commands()
    assert ".venv/bin/python -m pip install -q -e .[hf,test]" in ci
    expected = {".[hf,test]": ".[hf]"}
    assert _install_commands("--image") == [_swap(line, expected) for line in ci]
    # The GPU image: vLLM's CUDA build in place of the transformers backend; the rest alike.
    expected = {".[hf,test]": ".[vllm] gguf>=0.10"}
    assert _install_commands("--gpu") == [_swap(line, expected) for line in ci]


def _swap(line: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        line = line.replace(old, new)
    return line


@pytest.mark.parametrize("image", ["cpu", "gpu"])
def test_images_copy_what_the_install_needs(image: str) -> None:
    copied: set[str] = set()
    for argument in dockerfile.arguments(dockerfile.read(dockerfile.IMAGES[image]), "COPY"):
        *sources, _target = argument.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            copied.add(source)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "scripts/install.sh"}
    needed |= {pattern.rstrip("*") for pattern
               in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= copied


@pytest.mark.parametrize("image", ["cpu", "gpu"])
def test_images_run_twinserve_serve_as_a_user_from_the_environment(image: str) -> None:
    steps = dockerfile.read(dockerfile.IMAGES[image])
    assert dockerfile.exec_form(steps, "ENTRYPOINT") == ["twinserve", "serve"]
    assert dockerfile.exec_form(steps, "CMD") is None  # arguments: `twinserve serve`'s
    user = dockerfile.arguments(steps, "USER")
    assert user and user[-1].split(":")[0].isdigit() and int(user[-1].split(":")[0]) > 0
    env = dockerfile.env(steps)
    assert env["TWINSERVE_HOST"] == "0.0.0.0"
    ports = {env["TWINSERVE_HTTP_PORT"], env["TWINSERVE_GRPC_PORT"]}
    assert set(" ".join(dockerfile.arguments(steps, "EXPOSE")).split()) == ports
    assert env.get("TWINSERVE_BACKEND") == ("vllm" if image == "gpu" else None)
    # The embedded model is converted at build, into a cache that the run only reads.
    prepare = dockerfile.index_of(steps, "RUN", "twinserve prepare")
    assert dockerfile.env(steps, prepare)["TWINSERVE_CACHE_DIR"] == env["TWINSERVE_CACHE_DIR"]
    assert env["TWINSERVE_CACHE_DIR"].startswith(IMAGE_ROOT + "/")
    for name in ("XDG_CACHE_HOME", "HF_HOME"):
        assert env[name].startswith(VOLUME), f"{name} outside the writable volume"


def _read_only_root(volume: Path) -> list[str] | None:
    """A command prefix that runs its command with the root filesystem read-only except for
    `volume` (a private mount namespace), or None where this machine cannot make one."""
    if shutil.which("unshare") is None:
        return None
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro / '
              '&& ! touch /ro-probe 2>/dev/null && exec "$@"')
    probe = subprocess.run([*unshare, "sh", "-c", script, str(volume), "true"],
                           capture_output=True, timeout=30)
    return [*unshare, "sh", "-c", script, str(volume)] if probe.returncode == 0 else None


@pytest.mark.parametrize("read_only_root", [False, True], ids=["writable-root", "read-only-root"])
def test_entry_command_serves_from_the_environment_alone(
        start_daemon_per_test: StartDaemon, tmp_path: Path, read_only_root: bool) -> None:
    """What the CPU image does: `RUN twinserve prepare` at build, then its ENTRYPOINT with
    its ENV alone, no flag; then again with the root filesystem read-only but for the volume,
    where this machine can make a mount namespace. The image's paths map onto this
    machine's: the venv, the prepared cache, the volume, HOME."""
    steps = dockerfile.read(dockerfile.IMAGES["cpu"])
    cache = default_cache_dir(os.environ)  # shared with the suite: converted once
    build_env = dockerfile.env(steps, dockerfile.index_of(steps, "RUN", "twinserve prepare"),
                               base={"PATH": os.environ["PATH"]})
    prepared = subprocess.run(["twinserve", "prepare"], cwd=REPO, text=True,
                              capture_output=True, timeout=300,
                              env={**os.environ, **_mapped(build_env, cache, tmp_path)})
    assert prepared.returncode == 0, prepared.stderr
    assert f"prepared: {cache}" in prepared.stderr

    volume = tmp_path / "volume"
    (volume / "tmp").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    read_only = _read_only_root(volume) if read_only_root else []
    if read_only is None:
        pytest.skip("this machine cannot make a mount namespace (unshare) for a read-only "
                    "root; the writable-root case ran the same entry command")
    run_env = _mapped(dockerfile.env(steps, base={"PATH": os.environ["PATH"]}), cache, tmp_path)
    entry = dockerfile.exec_form(steps, "ENTRYPOINT")
    assert entry is not None
    daemon = start_daemon_per_test(None, command=[*read_only, *entry],
                                   env={**run_env, "TMPDIR": str(volume / "tmp")})
    assert "converting" not in daemon.log  # the build's conversion was used, read-only

    answer = httpx.post(f"{daemon.http_url}/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 4
    with grpc.insecure_channel(daemon.grpc_target) as channel:  # as a Kubernetes grpc probe
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        health = check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert daemon.stop() == 0
    assert list((tmp_path / "home").iterdir()) == []


def _mapped(image_env: dict[str, str], cache: Path, tmp_path: Path) -> dict[str, str]:
    """The image's ENV with its paths moved onto this machine, and loopback on free ports.
    A path the test does not know fails it: a new one needs a place here."""
    out: dict[str, str] = {}
    for name, value in image_env.items():
        if name == "PATH":
            value = value.replace(f"{IMAGE_ROOT}/.venv/bin", str(VENV_BIN))
        elif name == "TWINSERVE_CACHE_DIR":
            value = str(cache)
        elif name == "TWINSERVE_HOST":
            value = "127.0.0.1"
        elif name in ("TWINSERVE_HTTP_PORT", "TWINSERVE_GRPC_PORT"):
            value = "0"
        elif name == "HOME":
            value = str(tmp_path / "home")
        elif value.startswith(VOLUME):
            value = str(tmp_path / "volume" / "cache") + value[len(VOLUME):]
        elif value.startswith("/"):
            raise AssertionError(f"ENV {name}={value}: a path this test does not map")
        out[name] = value
    return out
