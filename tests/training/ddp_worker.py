"""Runs `deepsvdd train` as one torchrun rank, saving what this rank trained (for the tests).

`python ddp_worker.py OUT_DIR TRAIN_ARGS...`: after training, each rank writes
OUT_DIR/rank<R>.pt with its network's state, c, R and R recomputed from every training row.
With DEEPSVDD_TEST_FAIL_RANK=r, rank r raises before computing c (the others are then
blocked in its all-reduce).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cli.main import main
from training import deepsvdd, pipeline
from training.run import Run, Trained


def run(out: Path, argv: list[str]) -> int:
    rank = int(os.environ["RANK"])
    fail_rank = os.environ.get("DEEPSVDD_TEST_FAIL_RANK")
    train_split = pipeline.train_split
    init_center_c = deepsvdd.init_center_c

    def failing_init(*args: Any, **kwargs: Any) -> torch.Tensor:
        if fail_rank is not None and rank == int(fail_rank):
            raise RuntimeError("injected failure")
        return init_center_c(*args, **kwargs)

    def recording_split(job: Run, *args: Any, **kwargs: Any) -> Trained:
        trained = train_split(job, *args, **kwargs)
        state = trained.state
        dist = deepsvdd.score(state.net, state.c, trained.images)
        torch.save(
            {
                "state": state.net.state_dict(),
                "c": state.c.cpu(),
                "R": state.R,
                "R_all_rows": deepsvdd.get_radius(dist, job.cfg.nu),
                "n_train": len(trained.images),
            },
            out / f"rank{rank}.pt",
        )
        return trained

    deepsvdd.init_center_c = failing_init
    pipeline.train_split = recording_split  # type: ignore[assignment]
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2:]))
