"""A real Prometheus scrapes a live service and evaluates deploy/rules/deepsvdd.yml.

The service scores a known mix of normal and anomalous images while Prometheus scrapes it
every second; the recorded anomaly rate must then equal the mix's anomalous fraction, the
expected rate must come from the model file, and the anomaly-rate alert must go pending.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.support.images import image_bytes, noise_image
from tests.support.models import TinyModel, build_model
from tests.support.processes import stop_process
from tests.support.servers import free_port, make_settings, running_server

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "rules" / "deepsvdd.yml"
MODEL = "widgets"
# build_model's default threshold and the anomaly rate its metadata expects there.
DEFAULT_THRESHOLD = "q0.95"
EXPECTED_RATE = 0.05
NORMAL, ANOMALOUS = 30, 10
IMAGES_PER_REQUEST = 4
WAIT_S = 60.0
ANOMALY_RATE = "model:deepsvdd_anomaly_rate:ratio_rate5m"


def split_images(model: TinyModel, normal: int, anomalous: int) -> tuple[list[bytes], list[bytes]]:
    """PNG noise images scoring clearly below (normal) and above (anomalous) the threshold."""
    threshold = model.thresholds[DEFAULT_THRESHOLD]
    below: list[bytes] = []
    above: list[bytes] = []
    for seed in range(5000):
        image = noise_image(seed)
        ratio = model.reference_image(image) / threshold
        if ratio < 0.95 and len(below) < normal:
            below.append(image_bytes(image))
        elif ratio > 1.05 and len(above) < anomalous:
            above.append(image_bytes(image))
        if len(below) == normal and len(above) == anomalous:
            return below, above
    raise AssertionError(f"5000 noise images gave {len(below)} normal and {len(above)} anomalous")


def prometheus_config(target: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "deepsvdd",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


@contextlib.contextmanager
def running_prometheus(binary: str, target: str, workdir: Path) -> Iterator[httpx.Client]:
    """Prometheus scraping `target` on a free loopback port; a client of its HTTP API."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target)))
    log_path = workdir / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    with (
        log_path.open("wb") as log,
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT) as process,
        httpx.Client(base_url=url, timeout=10.0) as client,
    ):
        try:
            end = time.monotonic() + WAIT_S
            while not _answers(client, "/-/ready"):
                if process.poll() is not None or time.monotonic() > end:
                    raise AssertionError(f"Prometheus did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield client
        finally:
            stop_process(process, 20)


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


def query(api: httpx.Client, expr: str) -> list[dict[str, Any]]:
    """The instant vector of a PromQL expression evaluated now."""
    response = api.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(api: httpx.Client, expr: str) -> float:
    """Polls until `expr` gives exactly one sample; returns its value."""
    end = time.monotonic() + WAIT_S
    while not (result := query(api, expr)):
        if time.monotonic() > end:
            raise AssertionError(f"Prometheus gave no sample of {expr!r} within {WAIT_S}s")
        time.sleep(0.2)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def send_mix(url: str, normal: list[bytes], anomalous: list[bytes]) -> int:
    """Scores the images shuffled, a few per request over some seconds; returns anomalies."""
    labelled = [(png, False) for png in normal] + [(png, True) for png in anomalous]
    order = np.random.default_rng(0).permutation(len(labelled))
    flagged = 0
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for start in range(0, len(order), IMAGES_PER_REQUEST):
            chunk = [labelled[i] for i in order[start : start + IMAGES_PER_REQUEST]]
            files = [("files", (f"{i}.png", png, "image/png")) for i, (png, _) in enumerate(chunk)]
            response = client.post("/score", files=files)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [r["is_anomaly"] for r in results] == [bad for _, bad in chunk]
            flagged += sum(r["is_anomaly"] for r in results)
            time.sleep(0.3)
    return flagged


@pytest.mark.slow
def test_prometheus_records_the_anomaly_rate_of_a_known_mix(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed")
    model = build_model(tmp_path / "models", MODEL, 1, seed=11)
    normal, anomalous = split_images(model, NORMAL, ANOMALOUS)
    settings = make_settings(tmp_path / "models", default_model=MODEL)
    selector = f'{{model="{MODEL}"}}'

    with (
        running_server(settings) as live,
        running_prometheus(binary, live.url.removeprefix("http://"), tmp_path) as api,
    ):
        wait_for(api, 'up{job="deepsvdd"} == 1')
        # A scrape before any traffic: both counters start from 0 at the same timestamps,
        # so rate() extrapolates both alike and their ratio is the true fraction.
        assert wait_for(api, f"deepsvdd_images_scored_total{selector}") == 0
        assert send_mix(live.url, normal, anomalous) == ANOMALOUS

        total = NORMAL + ANOMALOUS
        wait_for(api, f"deepsvdd_images_scored_total{selector} == {total}")
        wait_for(api, f"deepsvdd_anomalies_total{selector} == {ANOMALOUS}")
        scraped = wait_for(api, f"timestamp(deepsvdd_images_scored_total{selector})")
        # The first rule evaluation that saw the final counters.
        wait_for(api, f"timestamp({ANOMALY_RATE}{selector}) > {scraped}")
        rate = wait_for(api, f"{ANOMALY_RATE}{selector}")
        assert rate == pytest.approx(ANOMALOUS / total, abs=1e-6)
        expected = wait_for(api, f"model:deepsvdd_expected_anomaly_rate:max{selector}")
        assert expected == pytest.approx(EXPECTED_RATE)
        assert wait_for(api, f"model:deepsvdd_images_scored:rate5m{selector}") > 0
        # 0.25 is above max(3 x 0.05, 0.05 + 0.05): the alert is pending (it needs 15m).
        pending = (
            f'ALERTS{{alertname="DeepSVDDAnomalyRateHigh", alertstate="pending", model="{MODEL}"}}'
        )
        assert wait_for(api, pending) == 1
        (up,) = query(api, 'up{job="deepsvdd"}')
        assert up["value"][1] == "1"

        response = api.get("/api/v1/rules")
        assert response.status_code == 200, response.text
        groups = response.json()["data"]["groups"]

    loaded = {g["name"]: g for g in groups}
    written = {g["name"]: g for g in yaml.safe_load(RULES.read_text())["groups"]}
    assert sorted(loaded) == sorted(written)
    for name, group in loaded.items():
        assert Path(group["file"]) == RULES
        names = [r["name"] for r in group["rules"]]
        assert names == [r.get("record") or r.get("alert") for r in written[name]["rules"]]
        broken = {r["name"]: r.get("lastError") for r in group["rules"] if r["health"] == "err"}
        assert broken == {}, f"rules failing in group {name}"
