"""What a training run tells its user as it goes: status lines, and warnings that say what
to try. Both go to stderr at once; warnings are also kept for the run's JSON summary."""

from __future__ import annotations

import sys

from scipy.stats import binomtest

from training.calibration import MIN_HOLDOUT, TrainingFigures

LOW_AUC = 0.6  # below this a model barely beats chance on its own test split
CHANCE = 0.5  # a test class below this is scored as more normal than the normal class
SHOWN_SKIPPED = 5  # unreadable files named in the warning line (all are in the JSON)
# The test split's normal images are said to differ from the held-out ones when so many pass
# the default threshold that, even at the highest false-alarm rate the hold-out allows (its
# 95% interval's upper end), a count as large has a one-sided binomial p-value below SHIFT_P.
SHIFT_P = 0.001


class Notes:
    """Prints `deepsvdd train: ...` lines on stderr and keeps the warnings in order."""

    def __init__(self, status: bool = True, prefix: str = "deepsvdd train") -> None:
        self.status, self.prefix = status, prefix
        self.warnings: list[str] = []

    def say(self, message: str) -> None:
        """A status line, left out under --quiet."""
        if self.status:
            print(f"{self.prefix}: {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A warning line, always printed, and kept for the summary."""
        self.warnings.append(message)
        print(f"{self.prefix}: warning: {message}", file=sys.stderr, flush=True)


def skipped_warning(skipped: tuple[tuple[str, str], ...]) -> str:
    names = ", ".join(f"{file} ({why})" for file, why in skipped[:SHOWN_SKIPPED])
    more = f" and {len(skipped) - SHOWN_SKIPPED} more" if len(skipped) > SHOWN_SKIPPED else ""
    return (
        f"skipped {len(skipped)} unreadable image file(s): {names}{more}; "
        "the JSON summary lists them all (--strict stops at the first instead)"
    )


def calibration_warnings(
    cal: TrainingFigures, default_threshold: str, kind: str = "image"
) -> list[str]:
    """Warnings about a model whose test AUC is low or whose thresholds rest on few images."""
    found = []
    if cal.auc is not None and cal.auc < LOW_AUC:
        remedy = (
            "add normal images, taken like the ones it will score"
            if kind == "patch"
            else "Try a longer schedule (e.g. --epochs 100 --pretrain-epochs 150), keep "
            "pretraining on (--pretrain), or add normal images"
        )
        found.append(
            f"test AUC {cal.auc:.3f} is below {LOW_AUC}: the model barely tells the test "
            f"anomalies from normal images. {remedy}"
        )
    found += below_chance_warnings(cal.class_aucs, kind)
    found += shifted_normals_warnings(cal, default_threshold)
    held_out = cal.calibration.n
    if held_out < MIN_HOLDOUT:
        low, high = cal.calibration.rate_interval[default_threshold]
        found.append(
            f"thresholds rest on {held_out} held-out normal images (fewer than "
            f"{MIN_HOLDOUT}): the false-alarm rate at {default_threshold} lies anywhere in "
            f"{low:.1%}..{high:.1%} (95% interval). Add normal images: with "
            f"{2 * MIN_HOLDOUT} or more, {MIN_HOLDOUT} are held out"
        )
    return found


def shifted_normals_warnings(cal: TrainingFigures, default_threshold: str) -> list[str]:
    """A warning when the test split's normal images pass the default threshold far more
    often than the held-out normal images do: they were taken differently (another part of
    the scene, lighting, focus, distance), and images like them will raise false alarms."""
    rate = cal.test_normal_rates.get(default_threshold)
    n = cal.test_normal_n
    if rate is None or n == 0:
        return []
    above = round(rate * n)
    _, high = cal.calibration.rate_interval[default_threshold]
    if binomtest(above, n, min(high, 1.0), alternative="greater").pvalue >= SHIFT_P:
        return []
    expected = cal.rates[default_threshold]
    return [
        f"{above} of the test split's {n} normal images ({rate:.0%}) score above "
        f"{default_threshold}, where {expected:.0%} of the held-out normal images do: they "
        "differ from the training images (another part of the scene, lighting, focus or "
        "distance), and images like them will raise false alarms at these thresholds. Train "
        "on normal images taken like the ones the model will score, or set its thresholds on "
        "some: deepsvdd calibrate MODEL --normal DIR"
    ]


def below_chance_warnings(class_aucs: dict[str, float], kind: str = "image") -> list[str]:
    """A warning naming the test classes that the model ranks backwards (AUC below chance)."""
    below = sorted((auc, name) for name, auc in class_aucs.items() if auc < CHANCE)
    if not below:
        return []
    listed = ", ".join(f"{name!r} (AUC {auc:.3f})" for auc, name in below)
    remedy = (
        "train on more normal images"
        if kind == "patch"
        else "a whole-image model ranks images blander than the normal ones (flatter, "
        "smoother, or with a small defect) near its centre: for small defects, train "
        "--model patch"
    )
    return [
        f"below chance ({CHANCE}): test class(es) {listed} score as MORE normal than the "
        "normal class's own test images, so the model has not learnt what sets them apart. "
        f"Check that the test images are taken like the training images; {remedy}"
    ]
