"""Labelled anomalies for Deep SAD: which training images of which classes are used, and the
record of that choice that goes into the model's metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import DataError, ImageSet, resolve_class
from training.deepsvdd import SAD_EPS, SAD_ETA


@dataclass(frozen=True)
class Labelled:
    """The labelled anomalies drawn from the training split, and where they came from."""

    x: np.ndarray  # uint8 (M, H, W, C)
    classes: list[str]  # class names, in the order asked for
    per_class: dict[str, int]  # class name -> labelled images used

    def record(self) -> dict[str, object]:
        """`training.labelled` in the metadata (Deep SAD only)."""
        return {
            "anomaly_classes": self.classes,
            "per_class": self.per_class,
            "n_labelled_anomalies": len(self.x),
            "n_labelled_normals": 0,
            "eta": SAD_ETA,
            "eps": SAD_EPS,
        }


def parse_classes(text: str | None) -> tuple[str, ...]:
    """`--anomaly-classes A,B` -> ("A", "B"); empty entries are refused."""
    if text is None:
        return ()
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise DataError(f"--anomaly-classes {text!r} has an empty entry; write A or A,B")
    return names


def pick_labelled(
    data: ImageSet, normal: int, classes: tuple[str, ...], fraction: float, seed: int
) -> Labelled | None:
    """A seeded `fraction` of each named class's training images (at least one), or None
    when no classes are named (plain Deep SVDD)."""
    if not classes:
        return None
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"--labelled-fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed + 7)  # independent of the normal-class hold-out draw
    parts, names, counts = [], [], {}
    for wanted in classes:
        k = resolve_class(data, wanted)
        name = data.class_names[k]
        if k == normal:
            raise DataError(f"--anomaly-classes names {name!r}, the normal class itself")
        if name in counts:
            raise DataError(f"--anomaly-classes names {name!r} twice")
        members = data.x_train[data.y_train == k]
        n = max(1, round(fraction * len(members)))
        parts.append(members[rng.permutation(len(members))[:n]])
        names.append(name)
        counts[name] = n
    return Labelled(np.concatenate(parts), names, counts)
