"""Report figures: valid PNG files written atomically, the right extremes, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.report import (
    extreme_indices,
    plot_extremes,
    plot_roc,
    plot_score_histograms,
    write_report,
)


def _brightness_images(scores: np.ndarray, channels: int) -> np.ndarray:
    """8x8 images whose every pixel equals the score (scores already in 0..255)."""
    pixels = np.broadcast_to(scores[:, None, None, None], (len(scores), 8, 8, channels))
    return pixels.astype(np.uint8)


def _png(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


@pytest.fixture()
def scored() -> tuple[np.ndarray, np.ndarray]:
    """200 scores in 0..255 (a shuffled ramp) and labels: the upper half anomalous."""
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.linspace(0.0, 255.0, 200))
    return scores, (scores > 127.5).astype(np.int64)


def test_extreme_indices_pick_lowest_and_highest_in_order() -> None:
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0])
    normal, anomalous = extreme_indices(scores, 2)
    assert normal.tolist() == [1, 5]
    assert anomalous.tolist() == [2, 4]


def test_extreme_indices_cap_n_at_the_number_of_scores() -> None:
    normal, anomalous = extreme_indices(np.array([2.0, 0.0, 1.0]), 10)
    assert normal.tolist() == [1, 2, 0]
    assert anomalous.tolist() == [0, 2, 1]


@pytest.mark.parametrize(
    ("scores", "n", "message"),
    [
        (np.array([]), 3, "non-empty"),
        (np.ones((2, 2)), 3, "1-D"),
        (np.array([1.0, np.nan]), 1, "NaN"),
        (np.array([1.0, 2.0]), 0, "n must be at least 1"),
    ],
)
def test_extreme_indices_reject_bad_input(scores: np.ndarray, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extreme_indices(scores, n)


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_extremes_shows_dark_normals_left_and_bright_anomalies_right(
    scored: tuple[np.ndarray, np.ndarray], tmp_path: Path, channels: int
) -> None:
    scores, _ = scored
    images = _brightness_images(scores, channels)
    path = plot_extremes(images, scores, tmp_path / "x.png", n=16, title="brightness")
    assert path == tmp_path / "x.png"
    grey = np.asarray(_png(path).convert("L"), dtype=float)
    left, right = grey[:, : grey.shape[1] // 2], grey[:, grey.shape[1] // 2 :]
    # The 16 lowest scores are below 20 and the 16 highest above 235: the left panel is
    # far darker than the right one, where bright tiles sit on the white page.
    assert left.min() < 30 and right.mean() > left.mean() + 40


def test_plot_extremes_rejects_bad_images(
    scored: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    scores, _ = scored
    with pytest.raises(ValueError, match="uint8"):
        plot_extremes(np.zeros((200, 8, 8, 1)), scores, tmp_path / "x.png")
    with pytest.raises(ValueError, match="C in"):
        plot_extremes(np.zeros((200, 8, 8, 2), np.uint8), scores, tmp_path / "x.png")
    with pytest.raises(ValueError, match="images has 199 entries but scores has 200"):
        plot_extremes(np.zeros((199, 8, 8, 1), np.uint8), scores, tmp_path / "x.png")


def test_plot_roc_writes_a_png(scored: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    scores, labels = scored
    image = _png(plot_roc(scores, labels, tmp_path / "roc.png", title="ramp"))
    assert image.width >= 300 and image.height >= 300


def test_plot_roc_needs_both_classes(scored: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    scores, labels = scored
    with pytest.raises(ValueError, match="both 0"):
        plot_roc(scores, np.zeros_like(labels), tmp_path / "roc.png")
    with pytest.raises(ValueError, match="labels must have shape"):
        plot_roc(scores, labels[:-1], tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


@pytest.mark.parametrize("spread", [1.0, 1e4])
def test_plot_score_histograms_writes_a_png(tmp_path: Path, spread: float) -> None:
    rng = np.random.default_rng(1)
    scores = np.exp(rng.uniform(0.0, np.log(spread) + 1.0, size=300))
    labels = rng.integers(0, 2, size=300)
    thresholds = {"nu-quantile": float(np.quantile(scores, 0.9)), "max": float(scores.max())}
    image = _png(plot_score_histograms(scores, labels, thresholds, tmp_path / "h.png"))
    assert image.width >= 400 and image.height >= 200


def test_plot_score_histograms_accept_one_class_and_negative_scores(tmp_path: Path) -> None:
    scores = np.linspace(-3.0, 2.0, 50)
    path = plot_score_histograms(scores, np.zeros(50, int), {"zero": 0.0}, tmp_path / "h.png")
    assert _png(path).width >= 400


def test_plot_score_histograms_reject_labels_other_than_0_1(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        plot_score_histograms(np.ones(3), np.array([0, 1, 2]), {}, tmp_path / "h.png")


def test_write_report_writes_three_named_pngs_and_no_temporary_files(
    scored: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    scores, labels = scored
    out_dir = tmp_path / "reports" / "nested"
    paths = write_report(
        _brightness_images(scores, 1), scores, labels, {"p95": 240.0}, out_dir, name="fmnist-0"
    )
    assert paths == {
        "extremes": out_dir / "fmnist-0-extremes.png",
        "roc": out_dir / "fmnist-0-roc.png",
        "scores": out_dir / "fmnist-0-scores.png",
    }
    for path in paths.values():
        assert _png(path).width > 100
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in paths.values())


def test_write_report_overwrites_an_existing_file(
    scored: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    scores, labels = scored
    (tmp_path / "m-roc.png").write_bytes(b"old")
    write_report(_brightness_images(scores, 3), scores, labels, {}, tmp_path, name="m")
    assert _png(tmp_path / "m-roc.png").width > 100


def test_write_report_rejects_a_name_that_is_not_a_file_name(
    scored: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    scores, labels = scored
    with pytest.raises(ValueError, match="report name"):
        write_report(_brightness_images(scores, 1), scores, labels, {}, tmp_path, name="../x")
