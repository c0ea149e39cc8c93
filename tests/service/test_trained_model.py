"""The service scoring a model that the training side really trained and exported."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from tests.support.metrics import metric_value
from tests.support.servers import make_settings, running_server


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_service_scores_match_onnx_runtime_and_flag_anomalies(
    tiny_model: dict[str, Any], fashion_subset: Path
) -> None:
    data = np.load(fashion_subset)
    x, y = data["x_test"][:60], data["y_test"][:60]
    session = ort.InferenceSession(tiny_model["model_path"], providers=["CPUExecutionProvider"])
    want = session.run(["score"], {"image": x[:, None].astype(np.float32) / 255.0})[0]

    with running_server(make_settings(tiny_model["models_dir"])) as live, live.client() as client:
        files = [("files", (f"{i}.png", png(img), "image/png")) for i, img in enumerate(x)]
        r = client.post("/score", params={"model": "tiny"}, files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        metrics = client.get("/metrics").text

    assert body["model"] == "tiny" and body["version"] == 1
    assert body["threshold"]["name"] == "q0.95"
    got = np.array([res["score"] for res in body["results"]])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert [res["filename"] for res in body["results"]] == [f"{i}.png" for i in range(60)]
    flagged = np.array([res["is_anomaly"] for res in body["results"]])
    # The trousers (class 1) are mostly inside the threshold, the rest mostly outside.
    assert flagged[y == 1].mean() < 0.3
    assert flagged[y != 1].mean() > 0.5
    scored = metric_value(metrics, "deepsvdd_images_scored_total", model="tiny", version="1")
    anomalies = metric_value(metrics, "deepsvdd_anomalies_total", model="tiny", version="1")
    assert scored == 60 and anomalies == flagged.sum()
