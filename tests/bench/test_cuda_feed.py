"""bench/harness/cuda_feed: decoding feeding inference measures, and a provider that did not
take the model stops it (the GPU check must fail loudly, never fall back to the CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.harness.cuda_feed import feed

MODEL = next(Path("models/fashion-mnist-bag").glob("*/model.onnx"))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def args(photo: Path, providers: str) -> argparse.Namespace:
    return argparse.Namespace(
        model=MODEL, photos=[photo], providers=providers, batch=4, workers=2, seconds=0.05
    )


def test_decoding_feeds_inference_on_the_cpu(photo: Path) -> None:
    result = feed(args(photo, "CPUExecutionProvider"))
    assert result["provider"] == "CPUExecutionProvider"
    for key in ("decode_images_per_s", "infer_images_per_s", "both_images_per_s"):
        assert result[key] > 0, key  # type: ignore[operator]


def test_a_provider_that_did_not_take_the_model_stops_the_check(photo: Path) -> None:
    # ONNX Runtime warns about a provider it lacks and runs the model on the next one.
    wanted = "AbsentExecutionProvider,CPUExecutionProvider"
    with pytest.warns(UserWarning), pytest.raises(SystemExit, match="not on AbsentExecution"):
        feed(args(photo, wanted))
