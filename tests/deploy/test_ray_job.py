"""The KubeRay RayJob (deploy/ray/rayjob.yaml) and its image (deploy/ray/Dockerfile), offline:
no CRD schema reaches kubectl here, so its structure is checked, its pod templates validate
against the Kubernetes 1.32 schemas as PodTemplates, and its entrypoint parses as the CLI's."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
RAY = ROOT / "deploy" / "ray"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: `make install` installs it"
    return found


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((RAY / "rayjob.yaml").read_text())
    return doc


def pod_templates(job: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"] for group in groups]


def deployment_pod() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    pod: dict[str, Any] = doc["spec"]["template"]["spec"]
    return pod


def dockerfile_lines() -> list[str]:
    text = (RAY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_a_rayjob_that_runs_deepsvdd_score_on_ray(job: dict[str, Any]) -> None:
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    program, *argv = shlex.split(spec["entrypoint"])
    assert program == "deepsvdd"
    args = build_parser().parse_args(argv)
    assert args.command == "score" and args.engine == "ray"
    assert args.output.startswith("s3://") and args.output.endswith(".parquet")
    assert all(path.startswith("s3://") for path in args.paths)
    assert (ROOT / "models" / args.model).is_dir() and args.models_dir == Path("/app/models")
    assert spec["shutdownAfterJobFinishes"] is True
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert sum(group["replicas"] for group in workers) == args.actors


def test_its_pods_are_guarded_as_the_deployment_is(job: dict[str, Any]) -> None:
    served = deployment_pod()
    (served_container,) = served["containers"]
    for template in pod_templates(job):
        pod = template["spec"]
        assert pod["securityContext"] == served["securityContext"]
        assert pod["automountServiceAccountToken"] is False
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        (container,) = pod["containers"]
        assert container["securityContext"] == served_container["securityContext"]
        assert container["image"] == "deepsvdd-serve-batch:0.1.0"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound])
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/dev/shm"]]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["HOME"] == "/tmp"  # the root filesystem is read-only


def test_its_pod_templates_validate_against_kubernetes_1_32(
    job: dict[str, Any], tmp_path: Path
) -> None:
    documents = [
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t{i}"}, "template": t}
        for i, t in enumerate(pod_templates(job))
    ]
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    out = subprocess.run(
        [tool("kubernetes-validate"), "-k", "1.32.0", "--strict", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(documents), out.stdout


def test_the_image_is_rays_own_release_with_the_batch_extra(job: dict[str, Any]) -> None:
    lines = dockerfile_lines()
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    ray_version = job["spec"]["rayClusterSpec"]["rayVersion"]
    assert base.startswith(f"rayproject/ray:{ray_version}-")
    assert any('pip install --no-cache-dir ".[batch]"' in line for line in lines)
    copied = {line.split()[-2].rstrip("/") for line in lines if line.startswith("COPY --chown")}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    assert {name for name in include if "*" not in name} <= copied
    assert "DEEPSVDD_MODELS_DIR=/app/models" in " ".join(lines)


def test_the_image_passes_hadolint() -> None:
    out = subprocess.run(
        [tool("hadolint"), str(RAY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
