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
from training.patch.bank import greedy_coreset
from training.patch.fit import standardise_from, train_patch_encoder
from training.patch.network import STRIDE, PatchEncoder, PatchNetConfig, grid_shape
from training.patch.sampling import NEIGHBOURS, crop, geometry, jitter_pairs, position_pairs
from training.patch.scoring import PatchScoring, Standardise

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
    torch.manual_seed(1)
    pre = Standardise(torch.tensor([0.5]), torch.tensor([0.2]))
    return PatchScoring(pre, encoder_with_stats(cfg), torch.randn(k, cfg.dim), torch.zeros(cfg.dim))


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


def test_the_trained_network_is_not_constant() -> None:
    images = textures(24)
    pre = standardise_from(images)
    fit = train_patch_encoder(TINY, images, pre, geometry(PATCH, SIZE), 2, 0, "cpu", False)
    assert all(np.isfinite(fit.losses))
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
        np.testing.assert_allclose(score, amap.reshape(n, -1).max(axis=1), rtol=1e-6)
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta.kind == "patch" and meta.patch is not None and meta.patch.coreset == k


def test_the_coreset_size_bounds_the_file(exported: dict[int, tuple[PatchScoring, Path]]) -> None:
    sizes = {k: path.stat().st_size for k, (_, path) in exported.items()}
    weights = sum(p.numel() for p in exported[SMALL][0].encoder.parameters()) * 4
    per_feature = (TINY.dim + 1) * 4  # a centred coreset row and its squared norm
    assert sizes[SMALL] <= weights + SMALL * per_feature + 64 * 1024
    bank_bytes = (LARGE - SMALL) * per_feature
    assert abs((sizes[LARGE] - sizes[SMALL]) - bank_bytes) <= 0.05 * bank_bytes


def test_only_patch_models_carry_patch_info() -> None:
    meta = patch_meta(8, (7, 7))
    with pytest.raises(ValueError, match="only a patch model"):
        ModelMetadata.model_validate({**meta.model_dump(), "kind": "image"})
    with pytest.raises(ValueError, match="only a patch model"):
        ModelMetadata.model_validate({**meta.model_dump(), "patch": None})
