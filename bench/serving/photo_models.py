"""The 128x128 models of the photograph mode: trained briefly on the photographs themselves
(their graph, not their scores, sets the speed), and copies that differ in decode policy only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.serving.photos import PhotoSet
from bench.serving.servers import REPO
from modelfile.metadata import METADATA_KEY, DecodePolicy, ModelMetadata
from modelfile.onnx_props import read_props, set_prop

SIZE = 128
EPOCHS = 1
CHANNELS = {"L": 1, "RGB": 3}


def train_command(data_dir: Path, models_dir: Path, name: str, color: str) -> list[str]:
    """`deepsvdd train` on `data_dir`/train/photos: the default network for the colour mode
    (LeNet-type mnist for grey, cifar10 for RGB), no pretraining, EPOCHS epochs, one thread."""
    return [
        *(sys.executable, "-m", "cli", "train", "--dataset", "folder"),
        *("--data-dir", str(data_dir), "--normal-class", "photos"),
        *("--image-size", str(SIZE), "--channels", str(CHANNELS[color])),
        *("--no-pretrain", "--epochs", str(EPOCHS), "--threads", "1", "--quiet"),
        *("--models-dir", str(models_dir), "--name", name),
    ]


def photo_model(models_dir: Path, color: str, photos: PhotoSet) -> Path:
    """models_dir/photo-<grey|rgb>/1/model.onnx, trained on `photos` unless already there."""
    name = f"photo-{'grey' if color == 'L' else 'rgb'}"
    model = models_dir / name / "1" / "model.onnx"
    if model.is_file():
        return model
    data = models_dir / f"{name}-data" / "train" / "photos"
    data.mkdir(parents=True, exist_ok=True)
    for i, jpeg in enumerate(photos.jpegs):
        (data / f"{i:03d}.jpg").write_bytes(jpeg)
    command = train_command(data.parents[1], models_dir, name, color)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not model.is_file():
        raise RuntimeError(f"training {name} failed: {done.stderr[-2000:]}")
    return model


def with_decode(model: Path, policy: DecodePolicy, out: Path) -> Path:
    """A copy of `model` at out/<name>/1/model.onnx whose metadata names decode `policy`."""
    data = model.read_bytes()
    meta = ModelMetadata.from_json(read_props(data).get(METADATA_KEY))
    meta = meta.model_copy(update={"decode": policy})
    target = out / model.parent.parent.name / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(set_prop(data, METADATA_KEY, meta.to_json()))
    return target
