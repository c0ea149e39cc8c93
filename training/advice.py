"""What a training run tells its user as it goes: status lines, and warnings that say what
to try. Both go to stderr at once; warnings are also kept for the run's JSON summary."""

from __future__ import annotations

import sys

from training.calibration import MIN_HOLDOUT, TrainingFigures

LOW_AUC = 0.6  # below this a model barely beats chance on its own test split
CHANCE = 0.5  # a test class below this is scored as more normal than the normal class
SHOWN_SKIPPED = 5  # unreadable files named in the warning line (all are in the JSON)


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
        found.append(
            f"test AUC {cal.auc:.3f} is below {LOW_AUC}: the model barely tells the test "
            "anomalies from normal images. Try a longer schedule (e.g. --epochs 100 "
            "--pretrain-epochs 150), keep pretraining on (--pretrain), or add normal images"
        )
    found += below_chance_warnings(cal.class_aucs, kind)
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


def below_chance_warnings(class_aucs: dict[str, float], kind: str = "image") -> list[str]:
    """A warning naming the test classes that the model ranks backwards (AUC below chance)."""
    below = sorted((auc, name) for name, auc in class_aucs.items() if auc < CHANCE)
    if not below:
        return []
    listed = ", ".join(f"{name!r} (AUC {auc:.3f})" for auc, name in below)
    remedy = (
        "train longer (--patch-epochs) or on more normal images"
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
