"""One patch run, resolved once (`PatchRun`), and what fitting it produced (`PatchTrained`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelfile.metadata import DatasetInfo
from training.config import RunSpec, TrainConfig
from training.data import ImageSet
from training.patch.fit import PatchFit
from training.patch.network import PatchNetConfig
from training.patch.sampling import PairGeometry
from training.patch.scoring import PatchScoring
from training.run import Split


@dataclass(frozen=True)
class PatchRun:
    """What a patch run trains on and with: the data, its split, the network and grid."""

    spec: RunSpec
    cfg: TrainConfig
    data: ImageSet
    k: int  # the normal class's index
    name: str
    split: Split
    net_cfg: PatchNetConfig
    geo: PairGeometry
    grid: tuple[int, int]  # (h, w) of the anomaly map

    def dataset_info(self) -> DatasetInfo:
        data_dir = self.spec.data_dir
        return DatasetInfo(
            name=self.spec.dataset,
            normal_class=self.k,
            class_name=self.data.class_names[self.k],
            n_train=len(self.split.train),
            data_dir=None if data_dir is None else str(Path(data_dir).resolve()),
        )


@dataclass(frozen=True)
class PatchTrained:
    """The scoring module (encoder, coreset, centre) and how it was made."""

    scoring: PatchScoring
    fit: PatchFit
    coreset: int  # features kept
    bank_size: int  # patch features the coreset was chosen from
    coreset_seconds: float
