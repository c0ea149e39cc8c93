"""Issue 17, finding 2 (service part): /models shows how many held-out images each threshold
rests on and how uncertain its rate is; the interval's ends are gauges for the alert rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.metrics import declared, metric_value
from tests.support.models import build_model
from tests.support.servers import LiveServer, make_settings

StartServer = Callable[..., LiveServer]
# 40 held-out images, as in the issue: q0.95 is 2 of 40 above, Clopper-Pearson 95% [0.6%, 16.9%].
CALIBRATION = {
    "n": 40,
    "method": "holdout",
    "confidence": 0.95,
    "rate_interval": {
        "q0.9": [0.0279, 0.2366],
        "q0.95": [0.0061, 0.1692],
        "q0.99": [0.0, 0.0881],
        "max": [0.0, 0.0881],
    },
}


def test_models_and_metrics_show_the_evidence_behind_each_threshold(
    start_server: StartServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    build_model(models, "parts", 1)  # made before calibration was recorded
    build_model(models, "parts", 2, meta_overrides={"calibration": CALIBRATION})
    live = start_server(make_settings(models))
    with live.client() as client:
        old, new = client.get("/models/parts").json()["versions"]
        metrics = client.get("/metrics").text

    assert old["calibration"] is None
    assert old["threshold_details"]["q0.95"]["held_out"] is None
    assert old["threshold_details"]["q0.95"]["expected_anomaly_rate"] == 0.05

    assert new["calibration"] == {**CALIBRATION, "folds": None}
    details = new["threshold_details"]
    assert set(details) == {"q0.9", "q0.95", "q0.99", "max"}
    assert details["q0.95"]["held_out"] == 40
    assert details["q0.95"]["rate_interval"] == [0.0061, 0.1692]
    assert details["q0.95"]["confidence"] == 0.95
    assert details["q0.95"]["expected_anomaly_rate"] == 0.05

    v2 = {"model": "parts", "version": "2"}
    assert metric_value(metrics, "deepsvdd_model_expected_anomaly_rate_upper", **v2) == 0.1692
    assert metric_value(metrics, "deepsvdd_model_expected_anomaly_rate_lower", **v2) == 0.0061
    assert declared(metrics, "deepsvdd_model_expected_anomaly_rate_upper")
    assert 'deepsvdd_model_expected_anomaly_rate_upper{model="parts",version="1"}' not in metrics
