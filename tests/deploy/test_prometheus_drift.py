"""A real Prometheus scrapes a shipped model's drift gauges and evaluates the drift rules.

Fashion-MNIST trouser test images keep the recorded PSI low and the drift alerts quiet;
overexposed, blurred and dress images each raise it past 0.25 and put DeepSVDDScoreDrift
in pending (it fires after 10 minutes); normal images in between bring it back down.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.deploy.test_prometheus_live import query, running_prometheus, wait_for
from tests.support import fashion
from tests.support.servers import make_settings, running_server

WINDOW = 400
PER_REQUEST = 20
PSI = "model_version:deepsvdd_score_drift_psi:max"
KS = "model_version:deepsvdd_score_drift_ks:max"
DRIFT_ALERTS = 'ALERTS{alertname=~"DeepSVDDScoreDrift.*"}'
ALERT_PENDING = 'ALERTS{alertname="DeepSVDDScoreDrift", alertstate="pending", model="%s"}'


def send(url: str, images: np.ndarray) -> None:
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for start in range(0, len(images), PER_REQUEST):
            files = [
                ("files", (f"{i}.png", fashion.png(image), "image/png"))
                for i, image in enumerate(images[start : start + PER_REQUEST])
            ]
            response = client.post("/score", files=files)
            assert response.status_code == 200, response.text


def figures(api: httpx.Client, selector: str) -> tuple[float, float]:
    return wait_for(api, PSI + selector), wait_for(api, KS + selector)


@pytest.mark.slow
@pytest.mark.skipif(not fashion.available(), reason="Fashion-MNIST is not installed")
def test_shifted_images_raise_the_drift_alert_and_normal_ones_keep_it_quiet(
    tmp_path: Path,
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed")
    name = fashion.shipped_repo(tmp_path / "models")
    settings = make_settings(tmp_path / "models", default_model=name, drift_window=WINDOW)
    selector = f'{{model="{name}", version="1"}}'
    normal = fashion.test_images(fashion.TROUSER)
    seen: dict[str, tuple[float, float]] = {}

    with (
        running_server(settings) as live,
        running_prometheus(binary, live.url.removeprefix("http://"), tmp_path) as api,
    ):
        wait_for(api, 'up{job="deepsvdd"} == 1')
        send(live.url, normal[:WINDOW])
        wait_for(api, f"model_version:deepsvdd_score_window_images:sum{selector} == {WINDOW}")
        seen["normal"] = psi, _ = figures(api, selector)
        assert psi < 0.1
        assert query(api, DRIFT_ALERTS) == []

        for i, shift in enumerate(fashion.SHIFTS):
            part = normal[WINDOW * (i % 2) : WINDOW * (i % 2 + 1)]
            send(live.url, fashion.shifted(part, shift))
            wait_for(api, f"{PSI}{selector} > 0.25")
            assert wait_for(api, ALERT_PENDING % name) == 1
            seen[shift] = figures(api, selector)
            # Normal images again: the window refills with them and the alert resolves.
            send(live.url, normal[WINDOW : 2 * WINDOW])
            wait_for(api, f"{PSI}{selector} < 0.1")
            wait_for(api, f"absent({DRIFT_ALERTS})")

    for what, (psi, ks) in seen.items():
        print(f"{what}: PSI {psi:.3f}, KS {ks:.3f}")
    assert all(seen[shift][0] > 0.25 for shift in fashion.SHIFTS)
