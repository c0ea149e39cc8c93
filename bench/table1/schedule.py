"""Table 1's settings: the schedule a resumed run must match, the methods and their columns,
and the figures of the literature and of the paper that the report sets ours beside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import ONE_CLASS, SOFT_BOUNDARY, TrainConfig

DATASET = "fashion-mnist"
HOLDOUT = 0.1  # share of the normal training images kept out, as `deepsvdd train` does
SOFT_NUS = (0.01, 0.1)
PAPER_EPOCHS = (350, 250)  # DCAE 250 + 100 and Deep SVDD 150 + 100 epochs (section 4.1)
SHALLOW = ("ocsvm", "kde", "iforest")
# Table columns: (key, heading); "soft-boundary" is the better nu of each class.
COLUMNS = (
    (ONE_CLASS, "OC-Deep SVDD"),
    (SOFT_BOUNDARY, "SB-Deep SVDD (best nu)"),
    ("dcae", "DCAE"),
    ("ocsvm", "OC-SVM"),
    ("kde", "KDE"),
    ("iforest", "IF"),
)
LITERATURE = (
    "Fashion-MNIST mean AUC in the literature: Deep SVDD about 85 to 89 as cited "
    "by later papers; OC-SVM about 92.8; GOAD about 94.1."
)
SCORE_BATCH = 1024
DISPLAY = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}
# A report's section from this heading on is written by hand and kept when it is rewritten.
NOTES_HEADING = "## Notes (by hand"
# bench/table1_anogan's results: the AnoGAN column, measured on a stratified test subset.
ANOGAN = Path(__file__).resolve().parents[1] / "table1_anogan" / "table1-anogan.json"
OUT = Path(__file__).resolve().parent  # bench/table1: the results of the default schedule
# The paper's Table 1, one-class Deep SVDD per class (MNIST digits 0-9, CIFAR-10 classes).
PAPER_ONE_CLASS = {
    "mnist": (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5),
    "cifar10": (61.7, 65.9, 50.8, 59.1, 60.9, 65.7, 67.7, 67.3, 75.9, 73.1),
}


@dataclass(frozen=True)
class Schedule:
    """The hyper-parameters that must match for a resumed run to continue an earlier one
    (classes and seeds may differ: a resumed run adds its (class, seed) pairs to the file)."""

    pretrain_epochs: int
    epochs: int
    soft_boundary: bool = True  # False: DCAE and one-class Deep SVDD only

    @property
    def soft_nus(self) -> tuple[float, ...]:
        return SOFT_NUS if self.soft_boundary else ()

    def train_config(self, seed: int, objective: str = ONE_CLASS, nu: float = 0.1) -> TrainConfig:
        return TrainConfig(
            objective=objective,  # type: ignore[arg-type]
            nu=nu,
            epochs=self.epochs,
            pretrain_epochs=self.pretrain_epochs,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        cfg = self.train_config(0)
        return {
            "pretrain_epochs": self.pretrain_epochs,
            "pretrain_milestone": cfg.pretrain_milestone,
            "epochs": self.epochs,
            "milestone": cfg.milestone,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "weight_decay": cfg.weight_decay,
            "warm_up_epochs": cfg.warm_up_epochs,
            "soft_boundary_nus": list(self.soft_nus),
            "holdout": HOLDOUT,
        }


def soft_key(nu: float) -> str:
    """The results key of soft-boundary Deep SVDD with this nu, e.g. soft-boundary-nu0.1."""
    return f"{SOFT_BOUNDARY}-nu{nu:g}"


def deep_keys(results: dict[str, Any]) -> tuple[str, ...]:
    nus = results["schedule"]["soft_boundary_nus"]
    return (ONE_CLASS, *(soft_key(nu) for nu in nus), "dcae")
