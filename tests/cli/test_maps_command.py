"""`deepsvdd score --maps DIR` writes the anomaly maps `POST /score?explain=true` serves (the
graph's own for a patch model, occlusion for a whole-image one), one PNG an input, named after
it; `deepsvdd calibrate` on a patch model keeps it a patch model."""

from __future__ import annotations

import base64
import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from modelfile.layout import open_model
from service.offline.maps import map_names
from service.offline.score import OfflineSettings, load
from tests.support.images import image_bytes, noise_image
from tests.support.patch_models import HEIGHT, MAP_SHAPE, WIDTH
from tests.support.servers import make_settings, running_server


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def served_pngs(models: Path, model: str, files: list[Path]) -> list[np.ndarray]:
    """The overlays `POST /score?explain=true` answers for `files`, decoded."""
    with running_server(make_settings(models)) as live, live.client() as client:
        parts = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files]
        answer = client.post("/score", params={"model": model, "explain": "true"}, files=parts)
    assert answer.status_code == 200, answer.text
    return [decoded(base64.b64decode(r["anomaly_map"]["png"])) for r in answer.json()["results"]]


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    """Three images, two of them named alike in two folders."""
    files = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "c.png"]
    for seed, path in enumerate(files):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(image_bytes(noise_image(seed, (WIDTH, HEIGHT), "L")))
    return files


def test_patch_maps_written_offline_are_the_served_ones(
    patch_repo: Path, inputs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maps, table = tmp_path / "maps", tmp_path / "scores.csv"
    args: list[str | Path] = ["score", "patches", *inputs, "--models-dir", patch_repo]
    code, _, err = run(capsys, *args, "--maps", maps, "--output", table)
    assert code == 0, err
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    names = ["x.png.map.png", "x.png-2.map.png", "c.png.map.png"]
    assert [row["path"] for row in rows] == [str(p) for p in inputs]
    assert [row["map"] for row in rows] == [str(maps / n) for n in names]
    assert sorted(p.name for p in maps.iterdir()) == sorted(names)
    written = [decoded((maps / name).read_bytes()) for name in names]
    for offline, served in zip(written, served_pngs(patch_repo, "patches", inputs), strict=True):
        assert offline.shape == served.shape and np.abs(offline - served).max() <= 1


def test_occlusion_maps_written_offline_are_the_served_ones(
    patch_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(image_bytes(noise_image(5, (28, 28), "L")))
    maps = tmp_path / "maps"
    code, _, err = run(capsys, "score", "digits", image, "--models-dir", patch_repo, "--maps", maps)
    assert code == 0, err
    offline = decoded((maps / "digit.png.map.png").read_bytes())
    (served,) = served_pngs(patch_repo, "digits", [image])
    assert offline.shape == served.shape and np.abs(offline - served).max() <= 1


def test_map_names_never_collide() -> None:
    files = [Path("a/x.png"), Path("b/x.png"), Path("x.png-2"), Path("c/x.png"), Path("x.jpg")]
    names = map_names(files)
    assert len(set(names)) == len(files)
    assert names[0] == "x.png.map.png" and names[4] == "x.jpg.map.png"


def test_maps_refuse_a_file_and_the_ray_engine(
    patch_repo: Path, inputs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file")
    args: list[str | Path] = ["score", "patches", *inputs, "--models-dir", patch_repo]
    code, _, err = run(capsys, *args, "--maps", taken)
    assert code == 2 and f"--maps {taken} is not a folder" in err
    ray = ("--engine", "ray", "--output", tmp_path / "x.parquet", "--maps", tmp_path / "m")
    code, _, err = run(capsys, *args, *ray)
    assert code == 2 and "--maps needs --engine local" in err


def test_calibrate_keeps_a_patch_model_a_patch_model(
    patch_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    shutil.copytree(patch_repo / "patches", models / "patches")
    normal = tmp_path / "normal"
    normal.mkdir()
    for seed in range(20):
        (normal / f"{seed}.png").write_bytes(image_bytes(noise_image(seed, (WIDTH, HEIGHT), "L")))
    code, _, err = run(capsys, "calibrate", "patches", "--normal", normal, "--models-dir", models)
    assert code == 0, err
    _, old = open_model(models / "patches" / "1" / "model.onnx")
    model = load(models / "patches" / "2" / "model.onnx", OfflineSettings())
    meta = model.metadata
    assert meta.version == 2 and meta.kind == "patch" and meta.default_threshold == "calibrated"
    assert meta.patch == old.patch and meta.patch is not None  # its patches and grid, kept
    assert model.map_shape == MAP_SHAPE
