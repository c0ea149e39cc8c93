"""Thresholds from the user's own images, written into a new version of the model file.

The (1 - R) quantile of the normal scores flags a fraction R of normal images; with labelled
anomalies, the thresholds that maximise F1 and Youden's J (TPR - FPR) are found too. An image
is an anomaly when its score is above the threshold, as in `POST /score`. Quantiles, rates and
intervals come from `modelfile.thresholds`, the code training uses for its own thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from modelfile import MODEL_FILE
from modelfile.layout import claim_version, write_atomic
from modelfile.metadata import METADATA_KEY, Calibration, ModelMetadata
from modelfile.onnx_props import read_props, set_prop
from modelfile.reference import reference_sample
from modelfile.thresholds import calibration_of, count_above, quantile_thresholds, share_above

QUANTILE = "calibrated"
F1 = "calibrated_f1"
YOUDEN = "calibrated_youden"


@dataclass(frozen=True)
class Choice:
    """A threshold and what it gives on the calibration images."""

    name: str
    value: float
    normal_flagged: float  # fraction of normal images above it
    precision: float | None = None
    recall: float | None = None

    def as_dict(self) -> dict[str, float | str | None]:
        return {
            "name": self.name,
            "value": self.value,
            "normal_flagged": self.normal_flagged,
            "precision": self.precision,
            "recall": self.recall,
        }


def _rates(
    normal: np.ndarray, anomalies: np.ndarray, threshold: float
) -> tuple[float, float | None, float | None]:
    """Fraction of normal flagged, precision and recall at `threshold` (score > threshold)."""
    flagged = share_above(normal, threshold)
    if anomalies.size == 0:
        return flagged, None, None
    false_pos, true_pos = count_above(normal, threshold), count_above(anomalies, threshold)
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
    return flagged, precision, true_pos / anomalies.size


def _choice(name: str, value: float, normal: np.ndarray, anomalies: np.ndarray) -> Choice:
    flagged, precision, recall = _rates(normal, anomalies, value)
    return Choice(name, value, flagged, precision, recall)


def choose(normal: np.ndarray, anomalies: np.ndarray, target_rate: float) -> list[Choice]:
    """The quantile threshold, and with anomalies the F1-best and Youden-best ones."""
    if normal.size == 0:
        raise ValueError("no normal image could be scored: calibration needs some")
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"target rate {target_rate} must lie strictly between 0 and 1")
    quantile = quantile_thresholds(normal, {QUANTILE: 1.0 - target_rate})[QUANTILE]
    choices = [_choice(QUANTILE, quantile, normal, anomalies)]
    if anomalies.size == 0:
        return choices
    # Candidates: every score (an image scoring exactly the threshold is normal) and 0.
    candidates = np.unique(np.concatenate([[0.0], normal, anomalies]))
    # Images above each candidate: the count minus those at or below it.
    fp = normal.size - np.searchsorted(np.sort(normal), candidates, side="right")
    tp = anomalies.size - np.searchsorted(np.sort(anomalies), candidates, side="right")
    f1 = 2 * tp / np.maximum(2 * tp + fp + (anomalies.size - tp), 1)
    youden = tp / anomalies.size - fp / normal.size
    for name, objective in ((F1, f1), (YOUDEN, youden)):
        choices.append(
            _choice(name, float(candidates[int(np.argmax(objective))]), normal, anomalies)
        )
    return choices


@dataclass(frozen=True)
class UserThresholds:
    """The thresholds chosen on the user's images, and what they rest on."""

    choices: list[Choice]
    calibration: Calibration  # the normal images' count and each threshold's rate interval
    n_anomalies: int
    # The user's normal scores, sorted and bounded: drift's new baseline (None under 2 images).
    reference: list[float] | None

    def counts(self) -> dict[str, int]:
        return {"n_normal": self.calibration.n, "n_anomalies": self.n_anomalies}


def user_thresholds(
    normal: np.ndarray, anomalies: np.ndarray, target_rate: float
) -> UserThresholds:
    """`choose`'s thresholds with the Clopper-Pearson interval of each one's false-alarm rate."""
    choices = choose(normal, anomalies, target_rate)
    thresholds = {c.name: c.value for c in choices}
    return UserThresholds(
        choices,
        calibration_of(normal, thresholds, "calibrate"),
        int(anomalies.size),
        reference_sample(normal) if normal.size >= 2 else None,
    )


def calibrated_metadata(meta: ModelMetadata, version: int, chosen: UserThresholds) -> ModelMetadata:
    """`meta` as the next version: the new thresholds added, the quantile one the default."""
    data = meta.model_dump(mode="json")
    data["version"] = version
    data["created"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data["thresholds"] = {**meta.thresholds, **{c.name: c.value for c in chosen.choices}}
    data["expected_anomaly_rate"] = {
        **meta.expected_anomaly_rate,
        **{c.name: c.normal_flagged for c in chosen.choices},
    }
    data["default_threshold"] = QUANTILE
    if chosen.reference is not None:
        data["score_reference"] = chosen.reference
    # The new thresholds rest on the user's normal images; the earlier ones keep their values
    # but not an interval, which belonged to another set of images.
    data["calibration"] = chosen.calibration.model_dump(mode="json")
    data["user_calibration"] = {
        "from_version": meta.version,
        **chosen.counts(),
        "thresholds": [c.as_dict() for c in chosen.choices],
    }
    return ModelMetadata.model_validate(data)


def write_new_version(
    model_path: Path, meta: ModelMetadata, chosen: UserThresholds
) -> tuple[Path, ModelMetadata]:
    """Copies `model_path` into the next version directory with the new thresholds."""
    version_dir = model_path.parent
    if not version_dir.name.isdigit() or version_dir.parent.name != meta.name:
        raise ValueError(
            f"{model_path} is not in a model repository (<models>/{meta.name}/<version>/"
            f"{MODEL_FILE}): calibrate a model by its name or directory"
        )
    data = model_path.read_bytes()
    if METADATA_KEY not in read_props(data):
        raise ValueError(f"{model_path} has no {METADATA_KEY!r} metadata entry")
    version, target_dir = claim_version(version_dir.parent)
    target = target_dir / MODEL_FILE
    try:
        new_meta = calibrated_metadata(meta, version, chosen)
        write_atomic(target, set_prop(data, METADATA_KEY, new_meta.to_json()))
    except BaseException:
        target_dir.rmdir()  # an empty version directory would block nothing, but confuse
        raise
    return target, new_meta
