"""A full disk while `deepsvdd train` exports or `deepsvdd calibrate` writes its new version:
one clear line on stderr, a non-zero exit, and no partial file or version directory left.

The disk fills in `modelfile.layout.write_atomic`, the one place model files are written:
half of the first write lands and then ENOSPC, or the fsync fails (as a quota or a network
file system reports it late).
"""

from __future__ import annotations

import errno
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from modelfile import layout

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = "fashion-mnist-trouser"
FAULTS = ("write", "fsync")


class _FullFile(io.FileIO):
    """A file on a full disk: half of the first write lands, then ENOSPC."""

    def write(self, data: Any) -> int:
        super().write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def _failing_fsync(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def fill_disk(monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    if fault == "write":
        monkeypatch.setattr(layout, "open", _FullFile, raising=False)
    else:
        monkeypatch.setattr(layout.os, "fsync", _failing_fsync)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes, and every directory (as b"/")."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"/")
        for p in sorted(root.rglob("*"))
    }


def one_error_line(stderr: str, command: str) -> str:
    """The one error line, the last of stderr (progress lines may come before it)."""
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    assert errors[0].startswith(f"deepsvdd {command}: error: "), errors[0]
    assert "No space left on device" in errors[0] and "nothing was written" in errors[0]
    assert "Traceback" not in stderr
    return errors[0]


@pytest.mark.parametrize("fault", FAULTS)
def test_calibrate_on_a_full_disk_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / SHIPPED, models / SHIPPED)
    normal = tmp_path / "normal"
    normal.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(normal / f"{i}.png")
    before = snapshot(models)
    fill_disk(monkeypatch, fault)
    code = main(["calibrate", SHIPPED, "--normal", str(normal), "--models-dir", str(models)])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    line = one_error_line(captured.err, "calibrate")
    assert "model.onnx" in line
    assert snapshot(models) == before


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise images of two classes: enough for one quick epoch and an export."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    x = rng.integers(0, 255, (400, 28, 28), dtype=np.uint8)
    y = np.arange(400) % 2
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return path


def train(npz: Path, models: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--dataset",
            "npz",
            "--data-dir",
            str(npz),
            "--normal-class",
            "1",
            "--epochs",
            "1",
            "--no-pretrain",
            "--device",
            "cpu",
            "--name",
            "full",
            "--models-dir",
            str(models),
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_train_on_a_full_disk_exports_nothing_and_resumes(
    tiny_npz: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    models = tmp_path / "models"
    with monkeypatch.context() as full:
        fill_disk(full, fault)
        code = train(tiny_npz, models)
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    line = one_error_line(captured.err, "train")
    assert "--resume" in line
    # The config goes first and fails: no model file, no temporary, no claimed version; the
    # one file left is the complete checkpoint that the error names.
    (checkpoint,) = [p for p in models.rglob("*") if p.is_file()]
    assert str(checkpoint) in line and not checkpoint.name.endswith(".tmp")
    assert not (models / "full" / "1").exists()

    assert train(tiny_npz, models, "--resume") == 0  # room again: exported, checkpoint gone
    assert (models / "full" / "1" / "model.onnx").is_file() and not checkpoint.exists()
