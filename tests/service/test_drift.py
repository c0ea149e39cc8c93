"""Score drift: the reference a model file carries, the windows and their figures, the gauges."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import ks_2samp

from modelfile.metadata import METADATA_KEY, MetadataError, ModelMetadata
from modelfile.onnx_props import read_props
from modelfile.reference import REFERENCE_SIZE, reference_sample
from service.drift import PSI_FLOOR, DriftMonitor, DriftSettings, Reference, ScoreWindow
from service.offline.calibrate import calibrated_metadata, user_thresholds
from service.offline.inspect import describe
from tests.support import fashion
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.servers import make_settings, running_server
from training.calibration import calibrate

RNG = np.random.default_rng(0)
NORMAL = RNG.gamma(2.0, 1.0, 600)


def test_reference_sample_keeps_a_small_holdout_whole_and_bounds_a_large_one() -> None:
    assert reference_sample(NORMAL) == sorted(NORMAL.tolist())
    large = RNG.normal(size=50_000)
    sample = reference_sample(large)
    assert len(sample) == REFERENCE_SIZE
    assert sample[0] == large.min() and sample[-1] == large.max()
    assert np.median(sample) == pytest.approx(np.median(large), abs=0.01)
    with pytest.raises(ValueError, match="at least 2"):
        reference_sample(np.array([1.0]))


def test_metadata_takes_a_sorted_reference_and_old_models_keep_loading(tmp_path: Path) -> None:
    model = build_model(tmp_path, "old", 1)
    meta = json.loads(read_props(model.path.read_bytes())[METADATA_KEY])
    assert ModelMetadata.model_validate(meta).score_reference is None
    assert ModelMetadata.model_validate({**meta, "score_reference": [0.1, 0.2]}).score_reference
    for bad, why in (([0.2, 0.1], "sorted"), ([0.1, math.inf], "non-finite")):
        with pytest.raises(MetadataError, match=why):
            ModelMetadata.from_json(json.dumps({**meta, "score_reference": bad}))


def test_training_and_calibrate_write_the_reference(tmp_path: Path) -> None:
    figures = calibrate(holdout=NORMAL, train=NORMAL, test=None, test_labels=None, R=None)
    assert figures.reference == sorted(NORMAL.tolist())
    model = build_model(tmp_path, "tiny", 1)
    meta = ModelMetadata.from_json(read_props(model.path.read_bytes())[METADATA_KEY])
    user = RNG.gamma(3.0, 1.0, 200)
    chosen = user_thresholds(user, np.array([]), 0.05)
    assert calibrated_metadata(meta, 2, chosen).score_reference == sorted(user.tolist())


def test_a_trained_model_carries_its_holdout_scores(tiny_model: dict[str, Any]) -> None:
    data = Path(tiny_model["model_path"]).read_bytes()
    meta = ModelMetadata.from_json(read_props(data).get(METADATA_KEY))
    assert meta.calibration is not None and meta.score_reference is not None
    assert len(meta.score_reference) == min(meta.calibration.n, REFERENCE_SIZE)
    q95 = float(np.quantile(meta.score_reference, 0.95))
    assert q95 == pytest.approx(meta.thresholds["q0.95"])


def test_the_shipped_models_carry_their_holdout_as_reference() -> None:
    for path in sorted(fashion.SHIPPED.glob("*/1/model.onnx")):
        meta = ModelMetadata.from_json(read_props(path.read_bytes()).get(METADATA_KEY))
        assert meta.score_reference is not None and len(meta.score_reference) == 600, path
        # The thresholds are quantiles of the same hold-out.
        q95 = float(np.quantile(meta.score_reference, 0.95))
        assert q95 == pytest.approx(meta.thresholds["q0.95"], rel=1e-4), path


def test_psi_and_ks_match_their_definitions() -> None:
    reference = Reference(sorted(NORMAL.tolist()))
    assert reference.expected == pytest.approx(np.full(10, 0.1))
    window = RNG.gamma(2.0, 1.5, 400)
    figures = reference.compare(window)
    assert figures.n == 400
    assert figures.ks == pytest.approx(ks_2samp(NORMAL, window).statistic)
    actual = np.bincount(np.searchsorted(reference.edges, window, side="right"), minlength=10)
    a = np.maximum(actual / 400, PSI_FLOOR)
    assert figures.psi == pytest.approx(float(np.sum((a - 0.1) * np.log(a / 0.1))))
    assert figures.above[0.5] == pytest.approx(np.mean(window > np.quantile(NORMAL, 0.5)))
    same = reference.compare(RNG.gamma(2.0, 1.0, 1000))
    assert same.psi < 0.1 and same.ks < 0.07
    # Every score above the reference: all but one bin empty, floored, still finite.
    assert math.isfinite(reference.compare(NORMAL + 100).psi)
    empty = reference.compare(np.array([]))
    assert empty.n == 0 and math.isnan(empty.psi) and math.isnan(empty.ks)


def test_the_window_keeps_the_last_scores_by_count_and_by_time() -> None:
    window = ScoreWindow(5)
    window.add(np.array([1.0, 2.0, 3.0]), now=10.0)
    window.add(np.array([4.0, 5.0, 6.0]), now=20.0)
    assert sorted(window.since(0.0)) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert sorted(window.since(15.0)) == [4.0, 5.0, 6.0]
    window.add(np.arange(100.0), now=30.0)  # more than it holds: the last 5
    assert sorted(window.since(0.0)) == [95.0, 96.0, 97.0, 98.0, 99.0]


def test_a_monitor_watches_only_versions_with_a_reference_while_enabled() -> None:
    reference = sorted(NORMAL.tolist())
    monitor = DriftMonitor(DriftSettings(size=100, seconds=60))
    assert monitor.watch("a", "1", reference)
    assert not monitor.watch("b", "1", None)
    monitor.add("a", "1", NORMAL[:30])
    monitor.add("b", "1", NORMAL[:30])
    ((name, version, figures),) = monitor.figures()
    assert (name, version, figures.n) == ("a", "1", 30)
    monitor.forget("a", "1")
    assert monitor.figures() == []
    assert not DriftMonitor(DriftSettings(size=0)).watch("a", "1", reference)
    assert not DriftMonitor(DriftSettings(seconds=0)).watch("a", "1", reference)


def gauges(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def score_images(client: httpx.Client, images: np.ndarray) -> None:
    for start in range(0, len(images), 50):
        files = [
            ("files", (f"{i}.png", fashion.png(image), "image/png"))
            for i, image in enumerate(images[start : start + 50])
        ]
        response = client.post("/score", files=files)
        assert response.status_code == 200, response.text


@pytest.mark.skipif(not fashion.available(), reason="Fashion-MNIST is not installed")
def test_the_service_exports_drift_of_a_shipped_model(tmp_path: Path) -> None:
    name = fashion.shipped_repo(tmp_path / "models")
    build_model(tmp_path / "models", "old", 1)  # no reference: no drift, and /models says so
    normal = fashion.test_images(fashion.TROUSER)[:300]
    settings = make_settings(tmp_path / "models", default_model=name, drift_window=300)
    with running_server(settings) as live, live.client() as client:
        versions = {m["name"]: m["versions"][0] for m in client.get("/models").json()["models"]}
        assert versions[name]["drift_reference"] == 600
        assert versions["old"]["drift_reference"] is None
        score_images(client, normal)
        quiet = client.get("/metrics").text
        score_images(client, fashion.shifted(normal, "blurred"))
        drifted = client.get("/metrics").text
    labels = (("model", name), ("version", "1"))
    assert gauges(quiet, "deepsvdd_score_window_images") == {labels: 300}
    assert gauges(quiet, "deepsvdd_model_score_reference") == {labels: 600}
    assert gauges(quiet, "deepsvdd_score_drift_psi")[labels] < 0.1
    assert gauges(quiet, "deepsvdd_score_drift_ks")[labels] < 0.1
    assert gauges(drifted, "deepsvdd_score_drift_psi")[labels] > 1.0
    assert gauges(drifted, "deepsvdd_score_drift_ks")[labels] > 0.5
    above = gauges(drifted, "deepsvdd_score_window_above")
    assert sorted(dict(k)["quantile"] for k in above) == ["0.5", "0.9", "0.95", "0.99"]
    assert above[(*labels[:1], ("quantile", "0.9"), labels[1])] > 0.9


def test_drift_off_exports_no_window(tmp_path: Path) -> None:
    name = fashion.shipped_repo(tmp_path / "models")
    settings = make_settings(tmp_path / "models", drift_window=0)
    with running_server(settings) as live, live.client() as client:
        png = image_bytes(noise_image(0).convert("L"))
        response = client.post("/score", params={"model": name}, files=[("files", ("a.png", png))])
        assert response.status_code == 200, response.text
        text = client.get("/metrics").text
    assert gauges(text, "deepsvdd_score_window_images") == {}
    assert gauges(text, "deepsvdd_score_drift_psi") == {}


def test_inspect_summarises_the_reference_unless_full() -> None:
    shown = describe("fashion-mnist-trouser", fashion.SHIPPED)
    assert shown["score_reference"]["n"] == 600
    assert shown["score_reference"]["min"] <= shown["score_reference"]["median"]
    assert (
        len(describe("fashion-mnist-trouser", fashion.SHIPPED, full=True)["score_reference"]) == 600
    )
