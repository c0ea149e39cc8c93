"""The pure pieces of the paper-experiment scripts: the test subset, the Table 2 summary."""

from __future__ import annotations

import numpy as np
import pytest

from bench.adversarial.report import method_values, table2
from bench.table1_anogan.run import stratified_subset


def test_the_subset_takes_the_same_count_of_every_class() -> None:
    labels = np.repeat(np.arange(4), [30, 10, 50, 20])
    subset = stratified_subset(labels, 8)
    assert np.bincount(labels[subset]).tolist() == [8, 8, 8, 8]
    assert (np.diff(subset) > 0).all()
    np.testing.assert_array_equal(subset, stratified_subset(labels, 8))  # seeded


def runs(aucs: list[dict[str, float]]) -> list[dict[str, object]]:
    return [
        {"class_name": "bag", "seed": i, "auc": {"fgsm": a}} for i, a in enumerate(aucs, start=0)
    ]


def test_soft_boundary_is_the_better_nu_over_the_seeds() -> None:
    base = {"ocsvm": 0.5, "kde": 0.5, "iforest": 0.5, "dcae": 0.5, "anogan": 0.5, "one-class": 0.7}
    seeds = [
        {**base, "soft-boundary-nu0.01": 0.60, "soft-boundary-nu0.1": 0.80},
        {**base, "soft-boundary-nu0.01": 0.70, "soft-boundary-nu0.1": 0.60},
    ]
    values = method_values(runs(seeds), "fgsm")
    assert values["best_nu"][0] == 0.1
    np.testing.assert_allclose(values["soft-boundary"], [80.0, 60.0])
    assert values["one-class"].mean() == pytest.approx(70.0)
    results = {"schedule": {"dataset": "fashion-mnist"}, "runs": dict(enumerate(runs(seeds)))}
    lines = table2(results, "fgsm", ["bag"])
    assert "| One-class Deep SVDD | 70.0 ± 0.0 |" in lines
    assert "| Soft-bound. Deep SVDD | 70.0 ± 10.0 |" in lines
