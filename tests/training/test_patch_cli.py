"""`deepsvdd train --model patch` end to end on a tiny folder: the model file, its outputs and
metadata, Triton's config, the map's orientation, and the bad inputs refused before training."""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from cli.main import main
from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, SCORE_OUTPUT, TRITON_CONFIG
from modelfile.metadata import METADATA_KEY, ModelMetadata
from tests.deploy.test_triton_repository import parse
from tests.training.test_patch import textures

SIZE, PATCH = 40, 24  # two patch sizes: 24 px and the encoder's 16-px stage
CELL = 16  # the map's cells are the smaller patches
GRID = (SIZE - CELL) // 4 + 1  # 7 cells a side


def bright_square(image: np.ndarray, top: int, left: int, side: int = 8) -> np.ndarray:
    out = image.copy()
    out[top : top + side, left : left + side] = 255
    return out


def write_folder(root: Path, n_train: int) -> Path:
    """root/train/good/*.png textures; root/test/{good,bad}: held-out ones, bad with a square."""
    for split, cls, images in (
        ("train", "good", textures(n_train, SIZE, seed=0)),
        ("test", "good", textures(4, SIZE, seed=1)),
        ("test", "bad", [bright_square(t, 16, 16) for t in textures(4, SIZE, seed=2)]),
    ):
        folder = root / split / cls
        folder.mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0]).save(folder / f"{i}.png")
    return root


def train_args(data: Path, models: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        str(data),
        "--normal-class",
        "good",
        "--model",
        "patch",
        "--patch-size",
        str(PATCH),
        "--image-size",
        str(SIZE),
        "--patch-epochs",
        "1",
        "--coreset",
        "64",
        "--threads",
        "1",
        "--name",
        "tiny-patch",
        "--models-dir",
        str(models),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON summary of one `deepsvdd train --model patch` run on 30 textures."""
    root = tmp_path_factory.mktemp("patchcli")
    data = write_folder(root / "data", 30)
    capture = root / "out.json"
    with open(capture, "w") as out, redirect_stdout(out):
        assert main(train_args(data, root / "models")) == 0
    return json.loads(capture.read_text().strip().splitlines()[-1])


def session_of(summary: dict[str, Any]) -> tuple[ort.InferenceSession, ModelMetadata]:
    s = ort.InferenceSession(summary["model_path"], providers=["CPUExecutionProvider"])
    return s, ModelMetadata.from_json(s.get_modelmeta().custom_metadata_map[METADATA_KEY])


def test_cli_trains_a_patch_model_whose_graph_returns_the_map(trained: dict[str, Any]) -> None:
    session, meta = session_of(trained)
    assert meta.kind == "patch" and meta.patch is not None
    assert meta.patch.grid == [GRID, GRID] and meta.patch.coreset == 64 and meta.patch.size == CELL
    assert meta.patch.views == [f"{CELL} px", f"{PATCH} px", "bands"]
    assert meta.radius is None and meta.rep_dim == meta.patch.dims
    assert meta.training["patch_objective"] == "synthetic" and meta.training["patch_epochs"] == 1
    assert "synthetic local anomalies" in meta.training["losses"]
    x = textures(3, SIZE, seed=5).transpose(0, 3, 1, 2).astype(np.float32) / 255
    score, emb, amap = session.run(
        [SCORE_OUTPUT, EMBEDDING_OUTPUT, ANOMALY_MAP_OUTPUT], {"image": x}
    )
    assert score.shape == (3,) and emb.shape == (3, meta.rep_dim) and amap.shape == (3, GRID, GRID)
    assert trained["export_rel_diff"] <= 1e-4 and trained["auc"] is not None


def test_config_pbtxt_lists_the_map_and_parses_as_triton_s(trained: dict[str, Any]) -> None:
    config = parse((Path(trained["model_path"]).parents[1] / TRITON_CONFIG).read_text())
    outputs = {o.name: list(o.dims) for o in config.output}
    assert outputs[ANOMALY_MAP_OUTPUT] == [GRID, GRID]
    assert set(outputs) == {SCORE_OUTPUT, EMBEDDING_OUTPUT, ANOMALY_MAP_OUTPUT}


@pytest.mark.parametrize(("top", "left"), [(2, 2), (2, 30), (30, 2)])
def test_a_planted_square_lights_the_cells_where_it_lies(
    trained: dict[str, Any], top: int, left: int
) -> None:
    session, _ = session_of(trained)
    image = bright_square(textures(1, SIZE, seed=7)[0], top, left)
    amap = session.run(
        [ANOMALY_MAP_OUTPUT], {"image": image.transpose(2, 0, 1)[None].astype(np.float32) / 255}
    )
    i, j = np.unravel_index(np.argmax(amap[0][0]), (GRID, GRID))
    # Cell (i, j) is the patch at (4i, 4j): it must overlap the square.
    assert 4 * i < top + 8 and 4 * i + CELL > top, (i, j)
    assert 4 * j < left + 8 and 4 * j + CELL > left, (i, j)


@pytest.mark.parametrize("level", [0, 128, 255])
def test_a_blank_frame_scores_above_every_threshold(trained: dict[str, Any], level: int) -> None:
    # A uniform frame (a dead camera, a capped lens) must never pass as normal; on photographs
    # with flat regions only the texture term flags it (test_patch.py tests the term itself).
    session, meta = session_of(trained)
    blank = np.full((1, 1, SIZE, SIZE), level / 255, dtype=np.float32)
    score, amap = session.run([SCORE_OUTPUT, ANOMALY_MAP_OUTPUT], {"image": blank})
    assert score[0] > max(meta.thresholds.values()), (score, meta.thresholds)
    assert float(amap.min()) > max(meta.thresholds.values())  # every cell: the whole image


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        # Images smaller than a patch and its neighbour.
        ("--image-size", "20", ["20x20 px", "24-px patches", "at least 39 px"]),
        # 1000 features from 25 patches of 24 px an image: 40 training images; 3 are left of 6.
        ("--coreset", "1000", ["at least 40 normal training images", "but 3 are left"]),
    ],
)
def test_bad_input_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, says: list[str]
) -> None:
    data = write_folder(tmp_path / "data", 6)
    args = train_args(data, tmp_path / "models")
    args[args.index(option) + 1] = value
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in says), err
    assert not (tmp_path / "models").exists()
