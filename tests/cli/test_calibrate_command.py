"""`deepsvdd calibrate`: a new version with thresholds from the user's images; the old one stays,
and a running service serves the new one after /admin/reload."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from modelfile.layout import open_model
from tests.conftest import FASHION_DIR, read_idx
from tests.support.servers import make_settings, running_server

ROOT = Path(__file__).resolve().parents[2]
NAME = "fashion-mnist-trouser"
TOKEN = "calibrate-test-token"


def _write(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / NAME, models / NAME)
    x = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")[:600]
    y = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")[:600]
    _write(tmp_path / "normal", x[y == 1][:50])
    _write(tmp_path / "anomalies" / "mixed", x[y != 1][:50])
    return models


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_calibrate_writes_a_new_version_that_a_running_service_takes_on_reload(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_file = repo / NAME / "1" / "model.onnx"
    old_digest = _digest(old_file)
    _, old_meta = open_model(old_file)
    settings = make_settings(repo, admin_token=TOKEN)
    with running_server(settings) as live, live.client() as client:
        args = ["calibrate", NAME, "--models-dir", str(repo), "--target-rate", "0.1"]
        args += [
            "--normal",
            str(repo.parent / "normal"),
            "--anomalies",
            str(repo.parent / "anomalies"),
        ]
        assert main(args) == 0
        out = capsys.readouterr()
        result = json.loads(out.out.strip().splitlines()[-1])
        assert "scoring" in out.err  # the progress bar

        new_file = repo / NAME / "2" / "model.onnx"
        assert _digest(old_file) == old_digest and new_file.is_file()
        assert result["version"] == 2 and result["from_version"] == 1
        assert (result["n_normal"], result["n_anomalies"]) == (50, 50)
        _, meta = open_model(new_file)
        chosen = {c["name"]: c for c in result["thresholds"]}
        assert set(chosen) == {"calibrated", "calibrated_f1", "calibrated_youden"}
        for name, choice in chosen.items():
            assert meta.thresholds[name] == choice["value"]
            assert 0.0 <= choice["precision"] <= 1.0 and 0.0 <= choice["recall"] <= 1.0
        assert chosen["calibrated"]["normal_flagged"] == pytest.approx(0.1, abs=0.03)
        assert meta.default_threshold == "calibrated" and meta.version == 2
        assert {k: meta.thresholds[k] for k in old_meta.thresholds} == old_meta.thresholds
        assert meta.center == old_meta.center and meta.name == NAME
        # The new thresholds' false-alarm rates come with the count and interval behind them.
        assert meta.calibration is not None and meta.calibration.n == 50
        low, high = meta.calibration.rate_interval["calibrated"]
        assert low < chosen["calibrated"]["normal_flagged"] < high

        before = client.get(f"/models/{NAME}").json()
        reload = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reload.status_code == 200, reload.text
        after = client.get(f"/models/{NAME}").json()
        png = (repo.parent / "normal" / "000.png").read_bytes()
        scored = client.post(
            "/score", params={"model": NAME}, files=[("files", ("0.png", png, "image/png"))]
        ).json()
        pinned = client.post(
            "/score",
            params={"model": NAME, "version": 1},
            files=[("files", ("0.png", png, "image/png"))],
        ).json()
    assert before["latest_version"] == 1
    assert after["latest_version"] == 2 and [v["version"] for v in after["versions"]] == [1, 2]
    assert scored["version"] == 2
    assert scored["threshold"] == {"name": "calibrated", "value": chosen["calibrated"]["value"]}
    assert scored["results"][0]["score"] == pinned["results"][0]["score"]


def test_calibrate_without_anomalies_gives_the_quantile_only(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["calibrate", str(repo / NAME), "--normal", str(repo.parent / "normal")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [c["name"] for c in result["thresholds"]] == ["calibrated"]
    assert result["thresholds"][0]["precision"] is None
    assert result["thresholds"][0]["normal_flagged"] == pytest.approx(0.05, abs=0.03)
    assert sorted(p.name for p in (repo / NAME).iterdir()) == ["1", "2", "config.pbtxt"]


def test_a_bad_target_rate_is_a_one_line_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["calibrate", NAME, "--normal", "x", "--target-rate", "1.5"])
    assert stop.value.code == 2
    assert "in (0, 1)" in capsys.readouterr().err
    assert sorted(p.name for p in (repo / NAME).iterdir()) == ["1", "config.pbtxt"]


def test_a_missing_folder_is_a_one_line_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["calibrate", NAME, "--models-dir", str(repo), "--normal", str(repo / "nosuch")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--normal" in err and "is not a folder" in err and len(err.strip().splitlines()) == 1
