"""bench/decode's pure pieces: the AUC summary over seeds and arms, and the tables it prints."""

from __future__ import annotations

import pytest

from bench.decode.quality import auc_summary
from bench.decode.report import quality_table


def run(normal: str, seed: int, arm: str, auc: float) -> dict[str, object]:
    return {"normal": normal, "seed": seed, "arm": arm, "auc": auc}


def test_the_summary_averages_seeds_and_gives_each_reduced_arm_its_gap_to_full() -> None:
    rows = [
        run("brick", 0, "full", 0.80),
        run("brick", 0, "reduced", 0.81),
        run("brick", 0, "reduced_1x", 0.70),
        run("brick", 1, "full", 0.90),
        run("brick", 1, "reduced", 0.89),
        run("brick", 1, "reduced_1x", 0.80),
        run("camera", 0, "full", 0.60),
        run("camera", 0, "reduced", 0.62),
        run("camera", 0, "reduced_1x", 0.66),
    ]
    summary = auc_summary(rows)
    assert summary["mean_auc"]["brick"] == {"full": 0.85, "reduced": 0.85, "reduced_1x": 0.75}
    assert summary["gap"]["brick"] == {"reduced": 0.0, "reduced_1x": -0.1}
    assert summary["gap"]["camera"]["reduced"] == pytest.approx(0.02)
    assert summary["overall"]["full"] == pytest.approx(0.7667, abs=1e-4)
    assert summary["overall_gap"]["reduced"] == pytest.approx(0.0067, abs=1e-4)
    lines = quality_table({"summary": summary})
    assert "| brick | 0.8500 | 0.8500 | +0.0000 | 0.7500 | -0.1000 |" in lines
    assert lines[-1].startswith("| all | 0.7667 | 0.7733 | +0.0067 |")
