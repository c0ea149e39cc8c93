"""Runs checkov on what the cluster would run: each kustomize overlay as rendered, and a Pod made
from each KServe ServingRuntime (checkov knows no ServingRuntime; KServe builds the predictor
pod from the runtime's containers and volumes and the pod fields of the InferenceService that
names it). The skipped checks and their reasons: deploy/.checkov.yaml.

python deploy/checkov.py [--checkov PATH]   # exit status: checkov's

The PrometheusRule is left out of the rendered stream: its alert annotations hold `{{ $labels }}`,
which makes checkov take the whole file for a Helm template and scan none of it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
OVERLAYS = ("cpu", "gpu")
UNSCANNABLE_KINDS = frozenset({"PrometheusRule"})
# On PATH, or where `make install` puts it (beside this Python) when the system has none.
KUBECTL = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
# What an InferenceService's predictor gives the pod beside the runtime's containers.
POD_FIELDS = ("automountServiceAccountToken", "securityContext")


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects as `kubectl kustomize` renders them, less the unscannable kinds."""
    out = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return [doc for doc in docs if doc["kind"] not in UNSCANNABLE_KINDS]


def runtime_pod(runtime: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    """The Pod KServe would run for an InferenceService on a ServingRuntime: the runtime's
    containers and volumes, and the pod fields of the service's predictor."""
    name = f"{runtime['metadata']['name']}-{service['metadata']['name']}"
    predictor = service["spec"]["predictor"]
    spec = runtime["spec"]
    pod_spec: dict[str, Any] = {"containers": spec["containers"], "volumes": spec["volumes"]}
    pod_spec.update({field: predictor[field] for field in POD_FIELDS if field in predictor})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "deepsvdd-serve"}},
        "spec": pod_spec,
    }


def _documents(pattern: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((DEPLOY / "kserve").glob(pattern))]


def write_manifests(folder: Path) -> list[Path]:
    """Every manifest to scan, one file each, in `folder`."""
    written = []
    for overlay in OVERLAYS:
        path = folder / f"overlay-{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(rendered(overlay)))
        written.append(path)
    services = _documents("inferenceservice*.yaml")
    for runtime in _documents("servingruntime*.yaml"):
        for number, service in enumerate(services):
            if service["spec"]["predictor"]["model"]["runtime"] != runtime["metadata"]["name"]:
                continue
            pod = runtime_pod(runtime, service)
            # The canary is a new revision of the same InferenceService: the same name.
            path = folder / f"pod-{number}-{pod['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(pod))
            written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", default="checkov", help="the checkov executable")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepsvdd-checkov-") as folder:
        files = write_manifests(Path(folder))
        command = [args.checkov, "--config-file", str(DEPLOY / ".checkov.yaml")]
        for path in files:
            command += ["--file", str(path)]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
