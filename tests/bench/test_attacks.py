"""The attack wrapper on a tiny classifier: budgets, success judged by the model, the summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.adversarial.attacks import (
    AttackConfig,
    AttackResult,
    predict,
    run_attack,
    train_classifier,
)


def two_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 8, 8) images: class 0 dark, class 1 bright, with noise; labels (n,)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 + 0.4 * y.float().view(-1, 1, 1, 1) + 0.05 * torch.randn(n, 1, 8, 8, generator=gen)
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    x, y = two_classes(128, 0)
    return train_classifier(x, y, 2, epochs=30, batch_size=32)


def test_the_tiny_classifier_separates_its_classes(classifier: torch.nn.Module) -> None:
    x, y = two_classes(40, 1)
    assert bool((predict(classifier, x) == y).all())


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_linf_attacks_stay_within_their_budget(classifier: torch.nn.Module, name: str) -> None:
    x, y = two_classes(10, 2)
    result = run_attack(classifier, x, y, name, AttackConfig(fgsm_eps=0.4, pgd_eps=0.4))
    assert result.success.all()  # 0.4 moves a dark image past the bright class everywhere
    assert (result.linf <= 0.4 + 1e-5).all()
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    # Success is the model's own verdict on the returned images.
    assert bool((predict(classifier, result.adversarial) != result.labels).all())


def test_a_budget_too_small_fails_and_reports_no_distance(classifier: torch.nn.Module) -> None:
    x, y = two_classes(10, 3)
    result = run_attack(classifier, x, y, "pgd", AttackConfig(pgd_eps=0.005))
    summary = result.summary()
    assert summary["success_rate"] == 0.0 and summary["n_success"] == 0
    assert summary["median_l2"] is None


def test_the_boundary_attack_finds_misclassified_images_close_to_the_originals(
    classifier: torch.nn.Module,
) -> None:
    x, y = two_classes(6, 4)
    short = run_attack(classifier, x, y, "boundary", AttackConfig(boundary_steps=5))
    longer = run_attack(classifier, x, y, "boundary", AttackConfig(boundary_steps=300))
    assert longer.success.all()
    assert bool((predict(classifier, longer.adversarial) != y).all())
    # The decision-based attack walks along the boundary towards the original.
    assert np.median(longer.l2) < np.median(short.l2)
    again = run_attack(classifier, x, y, "boundary", AttackConfig(boundary_steps=300))
    np.testing.assert_allclose(again.l2, longer.l2, rtol=1e-5)  # seeded


def test_misclassified_inputs_are_not_attacked(classifier: torch.nn.Module) -> None:
    x, y = two_classes(8, 5)
    wrong = y.clone()
    wrong[:3] = 1 - wrong[:3]
    result = run_attack(classifier, x, wrong, "fgsm", AttackConfig(fgsm_eps=0.4))
    assert result.index.tolist() == [3, 4, 5, 6, 7]
    assert result.n_input == 8 and result.summary()["n_attacked"] == 5
    torch.testing.assert_close(result.original, x[3:])


def test_summary_counts_successes_and_takes_the_median_over_them() -> None:
    original = torch.zeros(4, 1, 2, 2)
    adversarial = original.clone()
    adversarial[0, 0, 0, 0] = 0.3  # L2 0.3, success
    adversarial[1, 0, :, 0] = 0.4  # L2 0.4 * sqrt(2), success
    adversarial[2, 0, 0, :] = 0.5  # L2 0.5 * sqrt(2), failure: left out of the median
    adversarial[3] = 1.0  # L2 2.0, success
    result = AttackResult(
        name="fgsm",
        index=np.arange(4),
        original=original,
        adversarial=adversarial,
        labels=torch.tensor([0, 0, 0, 0]),
        predicted=torch.tensor([1, 1, 0, 1]),
        n_input=5,
    )
    summary = result.summary()
    assert summary["n_success"] == 3 and summary["success_rate"] == pytest.approx(0.75)
    assert summary["median_l2"] == pytest.approx(0.4 * np.sqrt(2), rel=1e-6)
    assert summary["max_linf"] == pytest.approx(1.0)
    assert summary["n_input"] == 5 and summary["n_attacked"] == 4


def test_unknown_attack_is_named(classifier: torch.nn.Module) -> None:
    x, y = two_classes(2, 6)
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        run_attack(classifier, x, y, "cw", AttackConfig())
