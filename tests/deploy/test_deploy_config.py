"""Deployment configuration: Prometheus rules and their tests, compose files, the Dockerfile,
the Grafana dashboard, and the container's command line run as the Dockerfile states it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import start_process, stop_process
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = sorted((DEPLOY / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "deepsvdd.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
SERVE_CMD = [
    "deepsvdd",
    "serve",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--models-dir",
    "/app/models",
]

# SPEC's metrics, the service's extra gauges and counter, and Prometheus' own `up`.
COUNTERS = [
    "deepsvdd_images_scored_total",
    "deepsvdd_anomalies_total",
    "deepsvdd_rejected_requests_total",
    "deepsvdd_model_load_failures_total",
    "deepsvdd_images_failed_total",
    "deepsvdd_shadow_images_total",
    "deepsvdd_shadow_dropped_total",
    "deepsvdd_trace_spans_dropped_total",
]
GAUGES = [
    "deepsvdd_queue_depth",
    "deepsvdd_model_info",
    "deepsvdd_model_threshold",
    "deepsvdd_model_expected_anomaly_rate",
    "deepsvdd_model_expected_anomaly_rate_lower",
    "deepsvdd_model_expected_anomaly_rate_upper",
    "deepsvdd_model_ready",
    "deepsvdd_shadow_agreement",
    "deepsvdd_shadow_rank_correlation",
    "deepsvdd_model_score_reference",
    "deepsvdd_score_drift_psi",
    "deepsvdd_score_drift_ks",
    "deepsvdd_score_window_images",
    "deepsvdd_score_window_above",
    "up",
]
HISTOGRAMS = [
    "deepsvdd_score_ratio",
    "deepsvdd_request_duration_seconds",
    "deepsvdd_inference_duration_seconds",
    "deepsvdd_batch_size",
    "deepsvdd_queue_wait_seconds",
]
EXPORTED = {
    *COUNTERS,
    *GAUGES,
    *(f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")),
}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana `label_values` query) reads."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\blabel_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        word, is_call = match.groups()
        if not is_call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule with the key `kind` ("record" or "alert") across deploy/rules/."""
    return [
        rule
        for path in RULES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def known_metrics() -> set[str]:
    return EXPORTED | {rule["record"] for rule in rules("record")}


def need_tool(name: str) -> str:
    """The path of a command-line tool: the venv's first, then PATH; skips the test if absent."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


# ---- Prometheus ----------------------------------------------------------------------


def test_metric_names_reads_only_metrics() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{model=~"$model", x="y z"}[5m])) / on (model) '
        "group_left histogram_quantile(0.99, b:c:rate5m) > 1e-3 unless d offset 15m"
    )
    assert metric_names(expr) == {"a_bucket", "b:c:rate5m", "d"}
    assert metric_names("label_values(deepsvdd_model_info, model)") == {"deepsvdd_model_info"}


def test_promtool_check_config() -> None:
    result = run([need_tool("promtool"), "check", "config", "deploy/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    # rule_files resolve next to the config file: the rules are checked along with it.
    assert "deploy/rules/deepsvdd.yml" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = run([need_tool("promtool"), "check", "rules", *map(str, RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    result = run([need_tool("promtool"), "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_scrape_config_targets_the_service_and_loads_the_rules() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["deepsvdd"]["static_configs"] for t in sc["targets"]]
    assert targets == ["deepsvdd:8000"]
    globs = config["rule_files"]
    assert sorted(p for g in globs for p in (DEPLOY / "prometheus.yml").parent.glob(g)) == RULES


def test_rules_read_only_known_metrics() -> None:
    known = known_metrics()
    for rule in rules("record") + rules("alert"):
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_anomaly_rate_is_recorded_per_model() -> None:
    recorded = {rule["record"]: rule["expr"] for rule in rules("record")}
    expr = " ".join(recorded["model:deepsvdd_anomaly_rate:ratio_rate5m"].split())
    assert expr.startswith("sum by (model) (rate(deepsvdd_anomalies_total[5m])) / (")
    assert "sum by (model) (rate(deepsvdd_images_scored_total[5m]))" in expr


def test_alerts_have_severity_summary_and_description() -> None:
    alerts = rules("alert")
    assert {a["alert"] for a in alerts} == {
        "DeepSVDDAnomalyRateHigh",
        "DeepSVDDAnomalyRateLow",
        "DeepSVDDHighErrorRatio",
        "DeepSVDDHighLatency",
        "DeepSVDDTargetDown",
        "DeepSVDDModelNotReady",
        "DeepSVDDNoModelServed",
        "DeepSVDDModelLoadFailures",
        "DeepSVDDRequestsRejected",
        "DeepSVDDScoreDrift",
        "DeepSVDDScoreDriftModerate",
        "DeepSVDDScoreDistributionChanged",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert alert["annotations"]["description"].strip(), alert["alert"]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {a["alert"] for a in rules("alert")}
    assert alerts - firing == set(), "alerts without a case that fires"
    assert alerts - quiet == set(), "alerts without a case that must stay quiet"


def test_every_recording_rule_value_is_tested() -> None:
    tested = {
        check["expr"]
        for path in RULE_TESTS
        for case in load_yaml(path)["tests"]
        for check in case.get("promql_expr_test", [])
    }
    assert {r["record"] for r in rules("record")} - tested == set()


# ---- docker-compose --------------------------------------------------------------------


def compose_config(files: list[str]) -> dict[str, Any]:
    """`docker-compose config` of the files (none: compose's own discovery), checked and parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DEEPSVDD_"))}
    argv = [need_tool("docker-compose"), *(a for f in files for a in ("-f", f)), "config"]
    quiet = run([*argv, "-q"], env=env)
    assert quiet.returncode == 0, quiet.stderr
    full = run(argv, env=env)
    assert full.returncode == 0, full.stderr
    parsed: dict[str, Any] = yaml.safe_load(full.stdout)
    return parsed


def gpu_devices(config: dict[str, Any]) -> list[dict[str, Any]]:
    deploy = config["services"]["deepsvdd"].get("deploy", {})
    devices: list[dict[str, Any]] = (
        deploy.get("resources", {}).get("reservations", {}).get("devices", [])
    )
    return devices


@pytest.mark.parametrize(
    ("files", "gpu"),
    [
        ([], True),
        (["docker-compose.yml", "docker-compose.override.yml"], True),
        (["docker-compose.yml", "docker-compose.cpu.yml"], False),
        (["docker-compose.yml"], False),
    ],
    ids=["default", "gpu", "cpu", "base"],
)
def test_compose_files(files: list[str], gpu: bool) -> None:
    config = compose_config(files)
    service = config["services"]["deepsvdd"]
    providers = service["environment"]["DEEPSVDD_PROVIDERS"]
    if gpu:
        assert gpu_devices(config) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert providers.split(",")[0] == "CUDAExecutionProvider"
    else:
        assert gpu_devices(config) == []
    if "docker-compose.cpu.yml" in files:
        assert providers == "CPUExecutionProvider"
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert service["environment"]["DEEPSVDD_MODELS_DIR"] == "/app/models"
    assert any(v.split(":")[1] == "/app/models" for v in service["volumes"])
    assert "/health/ready" in " ".join(service["healthcheck"]["test"])
    assert config["services"]["prometheus"]["image"].startswith("prom/prometheus:")
    assert config["services"]["grafana"]["image"].startswith("grafana/grafana:")
    assert {"prometheus-data", "grafana-data"} <= set(config["volumes"])


def test_compose_mounts_match_prometheus_and_grafana_paths() -> None:
    services = compose_config(["docker-compose.yml"])["services"]

    def mounts(name: str) -> dict[str, str]:
        pairs = (v.split(":")[:2] for v in services[name]["volumes"])
        return {target: source for source, target in pairs}

    prometheus = mounts("prometheus")
    # prometheus.yml's relative `rules/*.yml` then resolves to the mounted rules.
    assert Path(prometheus["/etc/prometheus/prometheus.yml"]) == DEPLOY / "prometheus.yml"
    assert Path(prometheus["/etc/prometheus/rules"]) == DEPLOY / "rules"
    assert prometheus["/prometheus"] == "prometheus-data"
    grafana = mounts("grafana")
    assert Path(grafana["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    providers = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "deepsvdd.yml")
    dashboards_path = providers["providers"][0]["options"]["path"]
    assert Path(grafana[dashboards_path]) == DASHBOARD.parent
    assert grafana["/var/lib/grafana"] == "grafana-data"


# ---- Grafana ---------------------------------------------------------------------------


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves left out."""
    panels = []
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []))
        if panel["type"] != "row":
            panels.append(panel)
    return panels


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_config(["docker-compose.yml"])["services"]


def test_dashboard_is_sound() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    uid = load_yaml(DATASOURCES)["datasources"][0]["uid"]
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [q["id"] for p in dashboard["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids repeat"

    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]
        exprs.append(variable["query"]["query"])

    read = set().union(*map(metric_names, exprs))
    assert read - known_metrics() == set(), "the dashboard reads metrics nobody exports or records"
    assert {
        "model:deepsvdd_anomaly_rate:ratio_rate5m",
        "model:deepsvdd_expected_anomaly_rate:max",
        "model:deepsvdd_expected_anomaly_rate_upper:max",
        "deepsvdd_images_failed_total",
        "deepsvdd_score_ratio_bucket",
        "route_status:deepsvdd_requests:rate5m",
        "model:deepsvdd_images_scored:rate5m",
        "route:deepsvdd_request_duration_seconds:p50_5m",
        "route:deepsvdd_request_duration_seconds:p99_5m",
        "deepsvdd_batch_size_bucket",
        "deepsvdd_queue_depth",
        "reason:deepsvdd_rejected_requests:rate5m",
        "deepsvdd_inference_duration_seconds_bucket",
        "deepsvdd_model_info",
        "deepsvdd_model_ready",
        "deepsvdd_shadow_agreement",
        "deepsvdd_shadow_rank_correlation",
    } <= read


# ---- Dockerfile ------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), grouped by stage."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def dockerfile_cmd() -> list[str]:
    (cmd,) = instructions(dockerfile_stages()[-1], "CMD")
    argv: list[str] = json.loads(cmd)
    return argv


def test_hadolint_passes() -> None:
    result = run([need_tool("hadolint"), "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_cmd_is_deepsvdd_serve() -> None:
    assert dockerfile_cmd() == SERVE_CMD


def test_dockerfile_copies_every_package_it_installs() -> None:
    """`pip install .` in the builder ships what pyproject lists: each package must be copied
    in first, or the image installs without it (as it once did without cli/ and modelfile/)."""
    builder = dockerfile_stages()[0]
    copied = {args.split()[0].rstrip("/") for args in instructions(builder, "COPY")}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {name for name in include if "*" not in name}
    assert packages and packages <= copied, sorted(packages - copied)


def test_dockerfile_stages() -> None:
    builder, runtime = dockerfile_stages()
    builder_image = instructions(builder, "FROM")[0].split()[0]
    runtime_image = instructions(runtime, "FROM")[0].split()[0]
    # The venv moves from builder to runtime: same distribution, same Python.
    assert builder_image == "ubuntu:24.04"
    assert re.fullmatch(r"nvidia/cuda:13\.[\d.]+-cudnn-runtime-ubuntu24\.04", runtime_image)

    pip_installs = [
        part
        for stage in (builder, runtime)
        for run_args in instructions(stage, "RUN")
        for part in re.split(r"&&|;", run_args)
        if "pip install" in part
    ]
    assert pip_installs, "the builder installs the package with pip"
    for command in pip_installs:
        # `pip install .` (no extras), optionally with the pinned ONNX Runtime beside it.
        assert re.search(r"\s\.(\s+\"onnxruntime-gpu==[^\"]+\")?$", command.strip()), (
            f"not the serving install: {command}"
        )
        assert "torch" not in command and "[" not in command, command
    assert not any("torch" in args for args in instructions(runtime, "RUN"))

    users = instructions(runtime, "USER")
    assert users, "the runtime stage runs as a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    (healthcheck,) = instructions(runtime, "HEALTHCHECK")
    assert "/health/ready" in healthcheck and "urllib" in healthcheck
    (exposed,) = instructions(runtime, "EXPOSE")
    assert exposed.split() == ["8000", "8001"]  # HTTP, and gRPC at DEEPSVDD_GRPC_PORT's default
    assert any("DEEPSVDD_MODELS_DIR=/app/models" in env for env in instructions(runtime, "ENV"))
    assert any(
        args.split()[-1].rstrip("/") == "/app/models" for args in instructions(runtime, "COPY")
    )


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "data", "bench", ".pytest_cache", "**/.checkpoint"} <= ignored
    assert not {"models", "service", "training", "pyproject.toml", "README.md"} & ignored


# ---- the container's command, run here -------------------------------------------------


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def localise(args: list[str], models_dir: Path, port: int) -> list[str]:
    """The container's strings with this machine's: models dir, port and loopback host."""
    swap = {"/app/models": str(models_dir), "8000": str(port), "0.0.0.0": "127.0.0.1"}
    return [swap.get(a, a) for a in args]


@pytest.fixture
def container_command(
    tiny_models_dir: Path,
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The Dockerfile's CMD and DEEPSVDD_* ENV, run from the venv on a free loopback port."""
    deepsvdd = Path(sys.executable).parent / "deepsvdd"
    assert deepsvdd.exists(), f"{deepsvdd} is missing: `make install` installs the package"
    cmd = dockerfile_cmd()
    assert cmd[0] == "deepsvdd"
    port = free_port()
    argv = [str(deepsvdd), *localise(cmd[1:], tiny_models_dir, port)]
    assert argv[1:] == [
        "serve", "--host", "127.0.0.1", "--port", str(port), "--models-dir", str(tiny_models_dir),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSVDD_")}
    for args in instructions(dockerfile_stages()[-1], "ENV"):
        for name, value in re.findall(r"(DEEPSVDD_\w+)=(\S+)", args):
            env[name] = localise([value], tiny_models_dir, port)[0]
    env["DEEPSVDD_PROVIDERS"] = "CPUExecutionProvider"
    env["DEEPSVDD_GRPC_PORT"] = str(free_port())  # not the image's 8001 on this machine
    log = tiny_models_dir.parent / f"serve-{port}.log"
    proc = start_process(argv, env, log)
    try:
        yield proc, port, log
    finally:
        stop_process(proc)


def wait_for(proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> int | None:
    """Polls `url` until it answers 200, the process exits, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline and proc.poll() is None:
        status = status_of(url)
        if status == 200:
            break
        time.sleep(0.2)
    return status


@pytest.mark.slow
def test_container_command_serves_and_stops_on_sigterm(
    container_command: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    proc, port, log = container_command
    base = f"http://127.0.0.1:{port}"
    assert wait_for(proc, f"{base}/health/live") == 200, log.read_text()
    assert wait_for(proc, f"{base}/health/ready") == 200, log.read_text()

    # What the rules and the dashboard read is what the service exports.
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    families = set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))
    assert {*COUNTERS, *GAUGES, *HISTOGRAMS} - {"up"} - families == set()
    assert 'deepsvdd_model_ready{model="tiny"} 1.0' in exposition
    assert 'deepsvdd_model_expected_anomaly_rate{model="tiny",version="1"} 0.05' in exposition

    # The image's HEALTHCHECK, pointed at this port, passes while the service is ready.
    (healthcheck,) = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    check = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    assert check[0] == "python3"
    check_argv = [sys.executable, *[a.replace(":8000/", f":{port}/") for a in check[1:]]]
    assert run(check_argv).returncode == 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    # ... and fails once nothing answers.
    assert run(check_argv).returncode != 0
