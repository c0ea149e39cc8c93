"""The patch model's pieces on tiny data: the encoder's grid equals its crops, the pairs,
the coreset, and the export round trip (score and map) against PyTorch, file size included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, SCORE_OUTPUT
from modelfile.layout import claim_version
from modelfile.metadata import METADATA_KEY, DatasetInfo, InputSpec, ModelMetadata, PatchInfo
from training.export import export_model
from training.patch.bands import Bands, texture
from training.patch.bank import greedy_coreset
from training.patch.fit import standardise_from, train_patch_encoder
from training.patch.network import STRIDE, PatchEncoder, PatchNetConfig, grid_shape
from training.patch.pipeline import SCORE_BATCH, scoring_batch
from training.patch.sampling import NEIGHBOURS, crop, geometry, jitter_pairs, position_pairs
from training.patch.scoring import (
    TOP_CELLS,
    PatchScoring,
    PatchViews,
    ScaleScorer,
    Standardise,
    TextureScorer,
    to_grid,
    whitening,
)
from training.patch.texture import TEXTURE_MARGIN, fit_texture

SIZE, PATCH = 40, 16
TINY = PatchNetConfig(channels=1, patch_size=PATCH, widths=(8, 16), dim=16)

# What the export round trip of a tiny model must reach (the export itself allows more).
ROUND_TRIP = 1e-4


def textures(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 1) stripes of random phase with noise: a normal surface."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[:size, :size][1]
    phase = rng.uniform(0, 6, (n, 1, 1))
    img = 128 + 50 * np.sin(xx[None] / 2.0 + phase) + rng.normal(0, 8, (n, size, size))
    return np.clip(img, 0, 255).astype(np.uint8)[..., None]


def encoder_with_stats(cfg: PatchNetConfig = TINY) -> PatchEncoder:
    """A random encoder whose BatchNorm statistics are not the identity's."""
    torch.manual_seed(0)
    enc = PatchEncoder(cfg).train()
    with torch.no_grad():
        enc(torch.randn(4, cfg.channels, 48, 48))
    return enc.eval()


def scoring_model(k: int, cfg: PatchNetConfig = TINY) -> PatchScoring:
    """Random coresets of `k` vectors in each of the views, with random whitening and
    standardisation (none of them the identity's)."""
    torch.manual_seed(1)
    pre = Standardise(torch.tensor([0.5]), torch.tensor([0.2]))
    views = PatchViews(encoder_with_stats(cfg), Bands(cfg.channels))
    scorers = []
    for name, v in zip(views.names(), views(torch.randn(1, 1, 48, 48)), strict=True):
        dim = v.shape[1]
        mu, w = torch.randn(dim), torch.eye(dim) + 0.1 * torch.randn(dim, dim)
        scorers.append(ScaleScorer(name, mu, w, torch.randn(k, dim), loc=0.5, spread=2.0))
    bands = 3 * cfg.channels
    term = TextureScorer(
        torch.zeros(bands), torch.eye(bands), torch.randn(8, bands), scale=0.1, margin=20.0
    )
    return PatchScoring(pre, views, scorers, term)


def patch_meta(k: int, grid: tuple[int, int], dims: int = TINY.dim) -> ModelMetadata:
    return ModelMetadata(
        name="p",
        version=1,
        kind="patch",
        patch=PatchInfo(
            size=PATCH, stride=STRIDE, grid=list(grid), coreset=k, bank=k, dims=dims, score="max"
        ),
        created="2026-01-01T00:00:00+00:00",
        objective="one-class",
        nu=0.1,
        center=[0.0] * dims,
        radius=None,
        thresholds={"q0.95": 1.0},
        default_threshold="q0.95",
        input=InputSpec(channels=1, height=SIZE, width=SIZE, color="L"),
        dataset=DatasetInfo(name="folder", normal_class=0, n_train=10),
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_whole_image_grid_equals_the_features_of_each_crop(channels: int) -> None:
    enc = encoder_with_stats(PatchNetConfig(channels, PATCH, widths=(8, 16), dim=16))
    x = torch.randn(2, channels, SIZE, SIZE + 8)
    with torch.no_grad():
        grid = enc(x)  # (2, dim, h, w)
        assert tuple(grid.shape[2:]) == grid_shape(SIZE, SIZE + 8, PATCH) == (7, 9)
        for i, j in ((0, 0), (3, 5), (6, 8)):
            patch = x[:, :, i * STRIDE : i * STRIDE + PATCH, j * STRIDE : j * STRIDE + PATCH]
            torch.testing.assert_close(enc.embed(patch), grid[:, :, i, j], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("objective", ["synthetic", "position"])
def test_the_trained_network_is_not_constant(objective: str) -> None:
    images = textures(24)
    pre = standardise_from(images)
    geo = geometry(PATCH, SIZE)
    fit = train_patch_encoder(TINY, images, pre, geo, 2, 0, "cpu", False, objective)
    assert all(np.isfinite(fit.losses)) and len(fit.losses) == 2
    assert (fit.position_accuracy is not None) == (objective == "position")
    x = pre(torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        f = fit.encoder(x).flatten(2)  # (4, dim, cells)
    assert float(f.std(dim=2).mean()) > 1e-3  # patches of one image differ
    assert float((f[0] - f[1]).abs().max()) > 1e-3  # so do images


def test_without_epochs_the_random_encoder_gets_the_images_batchnorm_statistics() -> None:
    images = textures(32)  # two whole steps: each step's mean weighs the same
    pre = standardise_from(images)
    fit = train_patch_encoder(TINY, images, pre, geometry(PATCH, SIZE), 0, 0, "cpu", False)
    assert fit.losses == [] and fit.position_accuracy is None and not fit.encoder.training
    conv, bn = fit.encoder.features[0], fit.encoder.features[1]
    x = pre(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        want = conv(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, want, atol=1e-4, rtol=1e-4)


def test_pairs_are_the_crops_at_their_offsets() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * SIZE * SIZE, dtype=torch.float32).reshape(2, 1, SIZE, SIZE)
    geo = geometry(PATCH, SIZE)
    first, second, labels = position_pairs(x, geo, gen)
    for b in range(2):
        (y0, x0), (y1, x1) = (
            divmod(int(t[b, 0, 0, 0]) % (SIZE * SIZE), SIZE) for t in (first, second)
        )
        dy, dx = NEIGHBOURS[labels[b]].tolist()
        assert (
            abs(y1 - y0 - dy * geo.step) <= geo.jitter
            and abs(x1 - x0 - dx * geo.step) <= geo.jitter
        )
    near, far = jitter_pairs(x, geo, gen)
    assert near.shape == far.shape == (2, 1, PATCH, PATCH)
    assert float((near - far).abs().max()) <= (geo.jitter * (SIZE + 1))
    np.testing.assert_array_equal(
        crop(x, torch.tensor([0, 2]), torch.tensor([1, 3]), 4)[1, 0, 0], x[1, 0, 2, 3:7]
    )


def test_greedy_coreset_takes_one_point_per_cluster() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 100
    points = (centres[:, None, :] + torch.randn(4, 50, 4)).reshape(200, 4)
    chosen = greedy_coreset(points, 4, gen)
    assert sorted(int(i) // 50 for i in chosen) == [0, 1, 2, 3]
    assert len(greedy_coreset(points, 500, gen)) == 200


SMALL, LARGE = 16, 4096  # coreset sizes of the two exported models


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[PatchScoring, Path]]:
    """Two tiny patch models exported once: coreset k -> (the PyTorch module, model.onnx)."""
    x = torch.rand(3, 1, SIZE, SIZE)
    models = {}
    for k in (SMALL, LARGE):
        model = scoring_model(k).eval()
        _, version_dir = claim_version(tmp_path_factory.mktemp("patch") / f"p{k}")
        path, rel = export_model(model, patch_meta(k, (7, 7)), version_dir, x)
        assert rel <= ROUND_TRIP
        models[k] = (model, path)
    return models


@pytest.mark.parametrize("k", [SMALL, LARGE])
def test_export_matches_pytorch_score_and_map(
    k: int, exported: dict[int, tuple[PatchScoring, Path]]
) -> None:
    model, path = exported[k]
    x = torch.rand(3, 1, SIZE, SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_score, want_emb, want_map = (t.numpy() for t in model(x))
    names = [SCORE_OUTPUT, EMBEDDING_OUTPUT, ANOMALY_MAP_OUTPUT]
    for n in (1, 3):
        score, emb, amap = session.run(names, {"image": x[:n].numpy()})
        assert amap.shape == (n, 7, 7) and emb.shape == (n, TINY.dim)
        scale = float(np.abs(want_map).max())
        assert float(np.abs(amap - want_map[:n]).max()) <= ROUND_TRIP * scale
        assert float(np.abs(score - want_score[:n]).max()) <= ROUND_TRIP * scale
        np.testing.assert_allclose(emb, want_emb[:n], rtol=1e-4, atol=1e-5)
        top = -np.sort(-amap.reshape(n, -1), axis=1)[:, :TOP_CELLS]
        np.testing.assert_allclose(score, top.mean(axis=1), rtol=1e-5)
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta.kind == "patch" and meta.patch is not None and meta.patch.coreset == k


def test_the_coreset_size_bounds_the_file(exported: dict[int, tuple[PatchScoring, Path]]) -> None:
    sizes = {k: path.stat().st_size for k, (_, path) in exported.items()}
    weights = sum(p.numel() for p in exported[SMALL][0].encoder.parameters()) * 4
    # Each view keeps a whitened coreset row and its squared norm per coreset entry.
    per_feature = sum((int(v.bank.shape[1]) + 1) * 4 for v in exported[SMALL][0].scale_scorers())
    assert sizes[SMALL] <= weights + SMALL * per_feature + 64 * 1024
    bank_bytes = (LARGE - SMALL) * per_feature
    assert abs((sizes[LARGE] - sizes[SMALL]) - bank_bytes) <= 0.05 * bank_bytes


def test_only_patch_models_carry_patch_info() -> None:
    meta = patch_meta(8, (7, 7))
    with pytest.raises(ValueError, match="only a patch model"):
        ModelMetadata.model_validate({**meta.model_dump(), "kind": "image"})
    with pytest.raises(ValueError, match="only a patch model"):
        ModelMetadata.model_validate({**meta.model_dump(), "patch": None})


TWO_SCALES = PatchNetConfig(channels=1, patch_size=24, widths=(8, 16), dim=16)


def test_the_map_averages_the_views_on_the_16_px_grid() -> None:
    model = scoring_model(8, TWO_SCALES).eval()
    assert model.views.names() == ["16 px", "24 px", "bands"]
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        _, emb, amap = model(x)
        views, descriptor = model.views.read(model.pre(x))
        small, large, bands = (s(v) for s, v in zip(model.scorers, views, strict=True))
        amap = amap - model.texture(descriptor)[:, None, None]  # the same in every cell
    assert amap.shape == bands.shape == (2, *grid_shape(SIZE, SIZE, 16)) == (2, 7, 7)
    assert large.shape == (2, *grid_shape(SIZE, SIZE, 24)) == (2, 5, 5)
    # A 24-px patch at (4i, 4j) has the centre of the 16-px patch one cell further on.
    torch.testing.assert_close(amap[:, 1:6, 1:6], (small + bands)[:, 1:6, 1:6] / 3 + large / 3)
    torch.testing.assert_close(amap[:, 0, 0], (small + bands)[:, 0, 0] / 3 + large[:, 0, 0] / 3)
    assert emb.shape == (2, TWO_SCALES.dim)


def test_the_bands_are_differences_of_blurs_at_the_patch_centres() -> None:
    bands = Bands(1)
    x = torch.zeros(1, 1, SIZE, SIZE)
    x[0, 0, 20, 24] = 1.0  # a bright point at the centre of the 16-px patch at (12, 16)
    out = bands(x)
    assert out.shape == (1, 3, *grid_shape(SIZE, SIZE, 16))
    fine = out[0, 0]
    assert float(fine[3, 4]) > 0.5 and float(fine.abs().sum() - fine[3, 4]) < 0.05
    flat = bands(torch.full((1, 1, SIZE, SIZE), 0.7))
    torch.testing.assert_close(flat, torch.zeros_like(flat), atol=1e-6, rtol=0)


def test_to_grid_repeats_the_border_of_the_coarser_map() -> None:
    m = torch.arange(6.0).reshape(1, 2, 3)
    out = to_grid(m, 4, 4)  # one row each side, no column before and one after
    assert out[0].tolist() == [[0, 1, 2, 2], [0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5]]
    assert to_grid(m, 2, 3) is m


def test_whitened_normal_features_have_about_the_identity_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=gen) * torch.tensor([10.0, 5, 1, 1, 0.5, 0.1])
    f = torch.randn(20_000, 6, generator=gen) @ mix + 3.0
    mu, w = whitening(f, eps=1e-6)
    white = (f - mu) @ w
    torch.testing.assert_close(torch.cov(white.T), torch.eye(6), atol=0.05, rtol=0.05)
    torch.testing.assert_close(w, w.T)


def test_a_patch_scorer_standardises_its_distances() -> None:
    scorer = ScaleScorer(
        "16 px", torch.zeros(2), torch.eye(2), torch.tensor([[0.0, 0.0], [3.0, 4.0]]), 1.0, 2.0
    )
    f = torch.tensor([[[[0.0, 3.0]], [[1.0, 4.0]]]])  # (1, 2, 1, 2): features (0, 1) and (3, 4)
    torch.testing.assert_close(scorer.distances(f), torch.tensor([[[1.0, 0.0]]]))
    torch.testing.assert_close(scorer(f), torch.tensor([[[0.0, -0.5]]]))
    with pytest.raises(ValueError, match="spread"):
        ScaleScorer("16 px", torch.zeros(2), torch.eye(2), torch.zeros(1, 2), 0.0, 0.0)


def test_a_two_scale_model_exports_within_the_round_trip(tmp_path: Path) -> None:
    model = scoring_model(32, TWO_SCALES).eval()
    x = torch.rand(3, 1, SIZE, SIZE)
    _, version_dir = claim_version(tmp_path / "two")
    path, rel = export_model(model, patch_meta(32, (7, 7), TWO_SCALES.dim), version_dir, x)
    assert rel <= ROUND_TRIP
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model(x)[2].numpy()
    (amap,) = session.run([ANOMALY_MAP_OUTPUT], {"image": x.numpy()})
    assert float(np.abs(amap - want).max()) <= ROUND_TRIP * float(np.abs(want).max())


def test_scoring_batches_shrink_for_large_images() -> None:
    assert scoring_batch(np.zeros((3, 128, 128, 1), np.uint8), 2048) == SCORE_BATCH
    assert scoring_batch(np.zeros((3, 512, 512, 3), np.uint8), 2048) == 2
    assert scoring_batch(np.zeros((3, 512, 512, 1), np.uint8), 10**6) == 1


def test_the_texture_term_flags_other_surfaces_and_spares_normal_images() -> None:
    bands = Bands(1)
    pre = standardise_from(textures(30))

    def descriptors(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return texture(bands.full(pre(x)))

    term = fit_texture(
        descriptors(textures(30, seed=0)),
        descriptors(textures(10, seed=1)),
        torch.Generator().manual_seed(0),
    )
    assert term.record()["images"] == 30 and term.record()["margin"] == TEXTURE_MARGIN
    assert (term(descriptors(textures(10, seed=2))) == 0).all()
    rng = np.random.default_rng(3)
    ramp = np.broadcast_to(np.linspace(60, 200, SIZE), (SIZE, SIZE))
    others = {
        "blank": np.full((2, SIZE, SIZE, 1), 128, dtype=np.uint8),
        "smooth": np.stack([ramp, ramp.T])[..., None].astype(np.uint8),
        "noise": rng.integers(0, 256, (2, SIZE, SIZE, 1), dtype=np.uint8),
    }
    for name, images in others.items():
        assert (term(descriptors(images)) > 0).all(), name


def test_the_image_score_is_the_mean_of_the_largest_cells() -> None:
    model = scoring_model(8).eval()
    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        score, _, amap = model(x)
    cells = amap.flatten(1).sort(dim=1, descending=True).values
    torch.testing.assert_close(score, cells[:, :TOP_CELLS].mean(dim=1))
    assert (score < cells[:, 0]).all()  # not the largest cell alone
    model.top_cells = 1
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], cells[:, 0])
    with pytest.raises(ValueError, match="at least one cell"):
        PatchScoring(model.pre, model.views, list(model.scale_scorers()), model.texture, 0)
