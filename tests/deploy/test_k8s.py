"""The Kubernetes and KServe manifests: every overlay renders with `kubectl kustomize`, its core
objects validate against the Kubernetes 1.32 schemas, and what they name (probe paths, ports,
settings, metrics) exists in the service; the PrometheusRule is deploy/rules/deepsvdd.yml."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from service.app import create_app
from service.metrics import MULTIPROC_ENV, Metrics
from service.server import GRACEFUL_SHUTDOWN_S
from service.settings import Settings
from tests.support.servers import make_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
OVERLAYS = ["cpu", "gpu"]
BIN = Path(sys.executable).parent
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SETTINGS_ENV = {f"DEEPSVDD_{name.upper()}" for name in Settings.model_fields}


def tool(name: str) -> str:
    """A tool on PATH or beside this Python (the Makefile installs kubectl there if missing)."""
    found = shutil.which(name) or shutil.which(name, path=str(BIN))
    assert found, f"{name} is missing: `make install` installs it"
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict[str, Any]]]:
    docs = render(request.param)
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    assert set(by_kind) == CORE_KINDS | CRD_KINDS
    return request.param, by_kind


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The service's routes, from its OpenAPI schema."""
    app = create_app(make_settings(tmp_path_factory.mktemp("empty-models")))
    return set(app.openapi()["paths"])


def exported_metrics() -> set[str]:
    text = generate_latest(Metrics().registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_core_objects_validate_against_kubernetes_1_32(
    rendered: tuple[str, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    overlay, by_kind = rendered
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all([by_kind[kind] for kind in sorted(CORE_KINDS)]))
    out = subprocess.run(
        [tool("kubernetes-validate"), "-k", "1.32.0", "--strict", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(CORE_KINDS), out.stdout


def test_probes_ports_and_security_match_the_service(
    rendered: tuple[str, dict[str, dict[str, Any]]], routes: set[str]
) -> None:
    _, by_kind = rendered
    deployment, settings = by_kind["Deployment"], by_kind["ConfigMap"]["data"]
    main = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {
        "http": int(settings["DEEPSVDD_PORT"]),
        "grpc": int(settings["DEEPSVDD_GRPC_PORT"]),
    }
    probes = {
        kind: main[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    for probe in probes.values():
        assert probe["path"] in routes and probe["port"] in ports
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["path"] == "/health/live"
    service_port, grpc_port = by_kind["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in ports
    assert grpc_port["targetPort"] == "grpc" and grpc_port["appProtocol"] == "kubernetes.io/h2c"
    (endpoint,) = by_kind["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"] and endpoint["path"] in routes
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        by_kind["Service"]["spec"]["selector"],
        by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        by_kind["ServiceMonitor"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()

    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    guard = main["securityContext"]
    assert guard["readOnlyRootFilesystem"] and not guard["allowPrivilegeEscalation"]
    assert guard["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e for e in main["env"]}
    assert env[MULTIPROC_ENV]["value"].startswith("/tmp/")
    # The drain, then the requests in flight, fit in the grace period.
    assert (
        pod["terminationGracePeriodSeconds"]
        > float(settings["DEEPSVDD_DRAIN_S"]) + GRACEFUL_SHUTDOWN_S
    )
    assert float(settings["DEEPSVDD_DRAIN_S"]) > 0
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])


def test_settings_are_the_services_and_valid(
    rendered: tuple[str, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    overlay, by_kind = rendered
    data = by_kind["ConfigMap"]["data"]
    main = container(by_kind["Deployment"])
    assert main["envFrom"] == [{"configMapRef": {"name": by_kind["ConfigMap"]["metadata"]["name"]}}]
    assert main["command"] == ["deepsvdd", "serve"]  # no flags: the ConfigMap's values apply
    names = set(data) | {e["name"] for e in main["env"]}
    assert names - SETTINGS_ENV == {MULTIPROC_ENV}
    # The admin token is a file of the optional Secret's volume, not an environment variable.
    assert "DEEPSVDD_ADMIN_TOKEN" not in names
    token_file = Path({e["name"]: e for e in main["env"]}["DEEPSVDD_ADMIN_TOKEN_FILE"]["value"])
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == str(token_file.parent)]
    volumes = by_kind["Deployment"]["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    assert mount["readOnly"] and volume["secret"]["optional"] is True
    values = {k.removeprefix("DEEPSVDD_").lower(): v for k, v in data.items()}
    assert values["models_dir"] == "/app/models"  # the image's copy of the models
    settings = Settings(**{**values, "models_dir": tmp_path})
    gpu = "nvidia.com/gpu" in main["resources"]["limits"]
    assert gpu == (overlay == "gpu")
    if gpu:
        assert settings.provider_preference[0] == "CUDAExecutionProvider"
        tolerations = by_kind["Deployment"]["spec"]["template"]["spec"]["tolerations"]
        assert {
            "key": "nvidia.com/gpu",
            "operator": "Exists",
            "effect": "NoSchedule",
        } in tolerations
    else:
        assert settings.provider_preference == ["CPUExecutionProvider"]


def test_only_the_ingress_clients_and_prometheus_reach_the_pods(
    rendered: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    _, by_kind = rendered
    policy = by_kind["NetworkPolicy"]["spec"]
    labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    ports = {p["name"] for p in container(by_kind["Deployment"])["ports"]}
    allowed = {}
    for rule in policy["ingress"]:
        assert rule["from"], "a rule without sources would admit every pod"
        for source in rule["from"]:
            key = yaml.safe_dump(source, sort_keys=True)
            allowed[key] = {p["port"] for p in rule["ports"]}
    assert set().union(*allowed.values()) == ports
    namespace = {"kubernetes.io/metadata.name": "monitoring"}
    monitoring = {"namespaceSelector": {"matchLabels": namespace}}
    assert allowed[yaml.safe_dump(monitoring, sort_keys=True)] == {"http"}  # /metrics only


def test_the_hpa_scales_on_a_queue_metric_the_service_exports(
    rendered: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    _, by_kind = rendered
    hpa = by_kind["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind["Deployment"]["metadata"]["name"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    rules = {rule["name"]["as"]: rule for rule in adapter["rules"]["custom"]}
    rule = rules[metrics["Pods"]["pods"]["metric"]["name"]]
    series = rule["seriesQuery"].split("{")[0]
    assert series == "deepsvdd_queue_depth" and series in exported_metrics()
    assert rule["name"]["matches"] == f"^{series}$"


def test_the_prometheusrule_is_the_rules_file(
    rendered: tuple[str, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    _, by_kind = rendered
    rules_file = ROOT / "deploy" / "rules" / "deepsvdd.yml"
    assert by_kind["PrometheusRule"]["spec"] == yaml.safe_load(rules_file.read_text())
    generator = runpy.run_path(str(K8S / "prometheusrule.py"))
    assert generator["main"](["--check"]) == 0, "run python deploy/k8s/prometheusrule.py"
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(by_kind["PrometheusRule"]["spec"]))
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(extracted)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def kserve(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((KSERVE / name).read_text())
    return doc


def test_kserve_runtime_and_both_inference_services(routes: set[str], tmp_path: Path) -> None:
    runtime = kserve("servingruntime.yaml")
    ours, triton = kserve("inferenceservice.yaml"), kserve("inferenceservice-triton.yaml")
    assert runtime["kind"] == "ServingRuntime" and runtime["spec"]["protocolVersions"] == ["v2"]
    assert {"name": "onnx", "version": "1", "autoSelect": False} in runtime["spec"][
        "supportedModelFormats"
    ]
    for service in (ours, triton):
        assert service["apiVersion"] == "serving.kserve.io/v1beta1"
        assert service["kind"] == "InferenceService"
        model = service["spec"]["predictor"]["model"]
        assert model["protocolVersion"] == "v2" and model["modelFormat"]["name"] == "onnx"
    assert ours["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert triton["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    assert (
        ours["spec"]["predictor"]["model"]["storageUri"]
        == triton["spec"]["predictor"]["model"]["storageUri"]
    )

    (main,) = runtime["spec"]["containers"]
    assert main["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert set(env) <= SETTINGS_ENV
    assert env["DEEPSVDD_MODELS_DIR"] == "/mnt/models"  # where KServe puts storageUri's files
    port = int(env["DEEPSVDD_PORT"])
    assert [p["containerPort"] for p in main["ports"]] == [port]
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/port"] == str(port)
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/path"] in routes
    for probe in ("readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["path"] in routes and main[probe]["httpGet"]["port"] == port
    values = {k.removeprefix("DEEPSVDD_").lower(): v for k, v in env.items()}
    Settings(**{**values, "models_dir": tmp_path})


@pytest.mark.parametrize("name", ["servingruntime.yaml", "servingruntime-grpc.yaml"])
def test_kserve_runtimes_are_hardened_as_the_deployment(name: str) -> None:
    runtime = kserve(name)
    (main,) = runtime["spec"]["containers"]
    guard = main["securityContext"]
    assert guard["readOnlyRootFilesystem"] and not guard["allowPrivilegeEscalation"]
    assert guard["seccompProfile"] == {"type": "RuntimeDefault"}
    assert guard["capabilities"]["drop"] == ["ALL"] and guard["runAsNonRoot"]
    (tmp,) = runtime["spec"]["volumes"]
    assert "emptyDir" in tmp
    assert main["volumeMounts"] == [{"name": tmp["name"], "mountPath": "/tmp"}]


def test_kserve_grpc_runtime_serves_the_protocol_on_its_h2c_port(
    routes: set[str], tmp_path: Path
) -> None:
    runtime, service = kserve("servingruntime-grpc.yaml"), kserve("inferenceservice-grpc.yaml")
    assert runtime["spec"]["protocolVersions"] == ["grpc-v2"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "grpc-v2"
    assert (
        model["storageUri"]
        == kserve("inferenceservice.yaml")["spec"]["predictor"]["model"]["storageUri"]
    )
    (main,) = runtime["spec"]["containers"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert set(env) <= SETTINGS_ENV
    grpc_port, http_port = int(env["DEEPSVDD_GRPC_PORT"]), int(env["DEEPSVDD_PORT"])
    assert main["ports"] == [{"name": "h2c", "containerPort": grpc_port, "protocol": "TCP"}]
    assert main["readinessProbe"]["grpc"] == {"port": grpc_port}
    live = main["livenessProbe"]["httpGet"]
    assert live["path"] in routes and live["port"] == http_port
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/port"] == str(http_port)
    values = {k.removeprefix("DEEPSVDD_").lower(): v for k, v in env.items()}
    Settings(**{**values, "models_dir": tmp_path})


def test_kserve_canary_is_the_inference_service_with_a_new_repository_at_ten_percent() -> None:
    ours, canary = kserve("inferenceservice.yaml"), kserve("inferenceservice-canary.yaml")
    assert (canary["apiVersion"], canary["kind"]) == (ours["apiVersion"], ours["kind"])
    assert canary["metadata"]["name"] == ours["metadata"]["name"]  # a new revision of it
    annotations = canary["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = dict(canary["spec"]["predictor"])
    assert predictor.pop("canaryTrafficPercent") == 10
    model, old = dict(predictor.pop("model")), dict(ours["spec"]["predictor"]["model"])
    assert model.pop("storageUri") != old.pop("storageUri")
    assert model == old
    assert predictor == {k: v for k, v in ours["spec"]["predictor"].items() if k != "model"}
