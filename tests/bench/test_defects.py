"""The defects benchmark's planting, datasets and metrics, on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.defects.evaluate import evaluate, flagged_above
from bench.defects.metrics import (
    Cells,
    hottest_on_defect,
    image_auroc,
    pixel_auroc,
    pro,
    to_pixels,
)
from bench.defects.plant import KINDS, plant
from bench.defects.report import aggregate, goals, threshold_table
from bench.defects.score import Scored
from bench.defects.surfaces import CROP, SPLITS, Counts, build, crops, read_mask

FLAT = np.full((64, 64), 80, dtype=np.uint8)  # no defect clips at 0 or 255 from here


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_where_the_pixels_changed(kind: str) -> None:
    for seed in range(5):
        planted = plant(kind, np.random.default_rng(seed), FLAT)
        change = np.abs(planted.image.astype(float) - FLAT)
        peak = change.max()
        assert peak >= 15, f"{kind}: nothing visible was planted"
        assert planted.mask.any()
        assert change[planted.mask].min() >= 0.5 * peak - 1, f"{kind}: mask covers unchanged pixels"
        assert change[~planted.mask].max() <= 0.5 * peak + 1, f"{kind}: change outside the mask"


def test_defects_are_seeded_and_placed_at_random() -> None:
    a = plant("stain", np.random.default_rng(3), FLAT)
    b = plant("stain", np.random.default_rng(3), FLAT)
    c = plant("stain", np.random.default_rng(4), FLAT)
    assert np.array_equal(a.image, b.image)
    assert a.params != c.params and not np.array_equal(a.mask, c.mask)


def test_holes_are_dark_and_scratches_bright() -> None:
    rng = np.random.default_rng(0)
    hole = plant("hole", rng, FLAT)
    assert hole.image[hole.mask].max() <= 30 + 0.5 * 80
    scratch = plant("scratch", rng, FLAT)
    assert scratch.image[scratch.mask].min() > 80 + 0.5 * 90


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown defect kind 'dent'"):
        plant("dent", np.random.default_rng(0), FLAT)


def test_crops_stay_within_their_rows() -> None:
    rows_photo = np.repeat((np.arange(512)[:, None] // 2).astype(np.uint8), 512, axis=1)
    out = crops(rows_photo, ((288, 512, 0, 512),), 30, np.random.default_rng(0))
    assert out.shape == (30, CROP, CROP)
    assert out[:, 0, 0].min() >= 288 // 2 and out[:, -1, 0].max() <= 511 // 2


def _quarter_of_each_pixel() -> np.ndarray:
    """A photograph whose pixels say which 256-px quarter holds them: 0 1 / 2 3."""
    rows, cols = np.indices((512, 512))
    return (2 * (rows >= 256) + (cols >= 256)).astype(np.uint8)


@pytest.mark.parametrize(("side", "quarters"), [(0, {0, 3}), (1, {1, 2})])
def test_blocks_split_crops_come_from_both_of_its_quarters(side, quarters) -> None:
    regions = SPLITS["blocks"][side]
    out = crops(_quarter_of_each_pixel(), regions, 31, np.random.default_rng(0))
    assert out.shape == (31, CROP, CROP)
    each = [set(np.unique(crop).tolist()) for crop in out]
    assert all(len(q) == 1 for q in each)  # no crop straddles two quarters
    found = [q.pop() for q in each]
    assert set(found) == quarters and abs(found.count(min(quarters)) - 15.5) == 0.5


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_test_regions_keep_32_px_from_every_training_region(split) -> None:
    train, test = SPLITS[split]
    for a in train:
        for b in test:
            gap_rows = max(b[0] - a[1], a[0] - b[1])
            gap_cols = max(b[2] - a[3], a[2] - b[3])
            assert max(gap_rows, gap_cols) >= 32, (a, b)


def test_unknown_split_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown split 'diagonal'"):
        build(tmp_path / "moon", "moon", 0, Counts(train=4, good=3, per_kind=2), "diagonal")


def test_build_writes_the_folder_layout_with_masks(tmp_path) -> None:
    root = build(tmp_path / "moon", "moon", 0, Counts(train=4, good=3, per_kind=2, other=2))
    assert len(list((root / "train" / "good").iterdir())) == 4
    assert len(list((root / "test" / "good").iterdir())) == 3
    assert len(list((root / "test" / "other").iterdir())) == 2
    manifest = json.loads((root / "plant.json").read_text())
    assert manifest["other"] == "camera" and manifest["split"] == "rows"
    for kind in KINDS:
        names = sorted(p.name for p in (root / "test" / kind).iterdir())
        assert names == sorted(manifest["planted"][kind]) and len(names) == 2
        for name in names:
            with Image.open(root / "test" / kind / name) as image:
                assert image.size == (CROP, CROP) and image.mode == "L"
            assert read_mask(root, kind, name).any()
    assert not read_mask(root, "good", "0000.png").any()


def test_image_auroc() -> None:
    assert image_auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert image_auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0


def test_to_pixels_averages_the_cells_over_each_pixel() -> None:
    cells = Cells.strided((2, 2), size=4, stride=2)  # 4-px patches every 2 px: 6x6 covered
    pixels = to_pixels(np.array([[0.0, 4.0], [8.0, 12.0]]), cells, 7, 7)
    assert pixels[0, 0] == 0.0 and pixels[5, 5] == 12.0
    assert pixels[0, 2] == pytest.approx(2.0)  # under cells (0, 0) and (0, 1)
    assert pixels[2, 2] == pytest.approx(6.0)  # under all four
    assert np.array_equal(pixels[6], pixels[5])  # the row no patch covers: the nearest one's
    same = np.arange(16.0).reshape(4, 4)
    assert np.array_equal(to_pixels(same, Cells.pixels(4, 4), 4, 4), same)


def _two_regions() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((32, 32), dtype=bool)
    mask[2:6, 2:6] = True  # region A
    mask[20:30, 20:30] = True  # region B, larger
    return mask, np.random.default_rng(0).uniform(0.0, 1.0, size=mask.shape)


def test_pixel_auroc_and_pro_on_known_maps() -> None:
    mask, noise = _two_regions()
    perfect = np.where(mask, 2.0, noise)
    assert pixel_auroc([perfect], [mask]) == 1.0
    assert pro([perfect], [mask]) == pytest.approx(1.0)
    only_small = np.where(mask, -1.0, noise)
    only_small[2:6, 2:6] = 2.0  # finds the small region, misses the large one
    assert pro([only_small], [mask]) == pytest.approx(0.5, abs=0.01)
    assert pixel_auroc([only_small], [mask]) < 0.2  # the large region dominates pixels
    assert pro([noise], [mask]) == pytest.approx(0.15, abs=0.05)  # chance


def test_pixel_auroc_pools_good_images() -> None:
    mask, noise = _two_regions()
    good = np.full((32, 32), 3.0)  # a good image hotter than any defect
    assert pixel_auroc([np.where(mask, 2.0, noise), good], [mask, np.zeros_like(mask)]) < 1.0


def test_hottest_cell_on_the_defect() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[1, 1] = True
    cells = Cells.strided((4, 4), size=4, stride=4)
    grid = np.zeros((4, 4))
    grid[0, 0] = 1.0
    assert hottest_on_defect(grid, cells, mask)
    grid[0, 0], grid[3, 3] = 0.0, 1.0
    assert not hottest_on_defect(grid, cells, mask)
    assert not hottest_on_defect(np.zeros((4, 4)), cells, mask)  # a flat map finds nothing
    wide = Cells.strided((4, 4), size=8, stride=2)  # overlapping patches: cell (3, 3) spans 6..13
    mask[1, 1], mask[12, 12] = False, True
    assert hottest_on_defect(grid, wide, mask)


def _scored(kind: str, scores: list[float], hot: tuple[int, int] | None) -> Scored:
    """Scored images of `kind` with 4x4 maps, hot at `hot` (a flat map when None); masks at
    the top-left 8x8 of 16x16 images for defects."""
    maps, masks = [], []
    for _ in scores:
        grid = np.zeros((4, 4))
        if hot is not None:
            grid[hot] = 1.0
        mask = np.zeros((16, 16), dtype=bool)
        if kind != "good":
            mask[:8, :8] = True
        maps.append(grid)
        masks.append(mask)
    names = [f"{i}.png" for i in range(len(scores))]
    return Scored(kind, names, np.array(scores), maps, Cells.strided((4, 4), 4, 4), masks)


def test_evaluate_and_aggregate_over_runs() -> None:
    good = _scored("good", [0.1, 0.2, 0.3], None)
    tested = {kind: _scored(kind, [0.5, 0.6], (0, 0)) for kind in KINDS}
    tested["scratch"] = _scored("scratch", [0.15, 0.25], (3, 3))  # ranked among good, map off
    result = evaluate(good, tested, with_maps=True)
    assert result["image_auroc"]["hole"] == 1.0
    assert result["image_auroc"]["scratch"] == pytest.approx(0.5)
    assert result["maps"]["hole"]["hottest_on_defect"] == 1.0
    assert result["maps"]["scratch"]["hottest_on_defect"] == 0.0
    assert result["maps"]["all_defects"]["hottest_on_defect"] == pytest.approx(0.75)
    flagged = flagged_above(good, tested, 0.22)
    assert flagged["flagged"]["good"] == pytest.approx(1 / 3)  # 0.3 of 0.1, 0.2, 0.3
    assert flagged["flagged"]["scratch"] == pytest.approx(0.5) and flagged["flagged"]["hole"] == 1.0
    piece = {
        "surface": "moon",
        "method": "image",
        "seed": 0,
        "training": {"train_seconds": 10.0},
        "raw_images_per_s": {"scores": 100.0, "with_maps": 1.0},
        "model_bytes": 1000,
        **result,
        "at_threshold": {"name": "q0.95", **flagged},
    }
    other_seed = {**piece, "seed": 1, "training": {"train_seconds": 30.0}}
    failed = {**piece, "seed": 2, "training": {"error": "boom"}}
    blocks = {**piece, "split": "blocks", "training": {"train_seconds": 50.0}}
    agg = aggregate([piece, other_seed, failed, blocks])
    assert agg["moon/image"]["train_seconds"] == {"mean": 20.0, "std": 10.0, "n": 2}
    assert agg["all/image"]["train_seconds"]["n"] == 2  # the other split is pooled apart
    assert agg["moon (blocks)/image"]["train_seconds"] == {"mean": 50.0, "std": 0.0, "n": 1}
    assert agg["all (blocks)/image"]["train_seconds"]["n"] == 1
    assert agg["moon/image"]["flagged/good"]["mean"] == pytest.approx(1 / 3)
    [row] = [r for r in threshold_table(agg) if r.startswith("| moon/image")]
    assert row.startswith("| moon/image (2 runs) | 0.33 ± 0.00 |")
    checks = goals(agg["all/image"])
    assert checks["image_auroc >= 0.95 every kind"] is False
    assert checks["/score?explain=true >= 50% of /score"] is None  # not measured
