"""`deepsvdd score`: folders scored offline, in one process or on a local Ray instance
(`--engine ray`), give the scores `POST /score` gives the same files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from tests.support.images import image_bytes, noise_image
from tests.support.models import TinyModel, build_model
from tests.support.servers import make_settings, running_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_model(tmp_path_factory.mktemp("models"), "tiny", 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested images in several formats and sizes, a broken PNG and a file that is no image."""
    root = tmp_path_factory.mktemp("images")
    (root / "a" / "b").mkdir(parents=True)
    for i in range(5):
        (root / f"grey{i}.png").write_bytes(image_bytes(noise_image(i)))
    (root / "a" / "colour.png").write_bytes(image_bytes(noise_image(10, (40, 30), "RGB")))
    (root / "a" / "b" / "photo.jpg").write_bytes(
        image_bytes(noise_image(11, (64, 64), "RGB"), "JPEG")
    )
    (root / "a" / "b" / "scan.bmp").write_bytes(image_bytes(noise_image(12), "BMP"))
    (root / "a" / "broken.png").write_bytes(image_bytes(noise_image(13))[:60])
    (root / "notes.txt").write_text("not an image, and not a known suffix: not searched")
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def server_scores(tiny: TinyModel, files: list[Path]) -> dict[str, float]:
    with running_server(make_settings(tiny.path.parents[2])) as live, live.client() as client:
        parts = [("files", (str(p), p.read_bytes(), "application/octet-stream")) for p in files]
        answer = client.post("/score", files=parts)
    assert answer.status_code == 200, answer.text
    return {r["filename"]: r["score"] for r in answer.json()["results"]}


def test_a_folder_scores_as_the_service_scores_it(
    tiny: TinyModel, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    code, stdout, stderr = run(
        capsys, "score", "tiny", folder, "--models-dir", tiny.path.parents[2], "--output", out
    )
    assert code == 0, stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "score", "threshold", "is_anomaly"]
    assert len(rows) == 8
    assert "broken.png" in stderr and "skipped" in stderr and "notes.txt" not in stdout
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["files"] == 9 and summary["scored"] == 8 and summary["skipped"] == 1
    assert summary["threshold"] == {"name": "q0.95", "value": tiny.thresholds["q0.95"]}
    expected = server_scores(tiny, [Path(r["path"]) for r in rows])
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected[row["path"]], rel=1e-6)
        assert row["is_anomaly"] == str(float(row["score"]) > tiny.thresholds["q0.95"])
    assert summary["anomalies"] == sum(r["is_anomaly"] == "True" for r in rows)


def test_jsonl_output_a_number_threshold_and_files_named_directly(
    tiny: TinyModel, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.jsonl"
    files = [folder / "grey0.png", folder / "grey1.png", folder / "notes.txt"]
    code, stdout, stderr = run(
        capsys, "score", tiny.path.parents[1], *files, "--threshold", "0", "--output", out
    )
    assert code == 0, stderr
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["grey0.png", "grey1.png"]
    assert all(r["is_anomaly"] is True and r["threshold"] == 0.0 for r in rows)
    pixels = np.stack([np.asarray(Image.open(f))[:, :, None] for f in files[:2]])
    assert [r["score"] for r in rows] == pytest.approx(tiny.reference(pixels).tolist(), rel=1e-5)
    assert "notes.txt" in stderr  # named on the command line: tried, and reported
    assert json.loads(stdout.strip().splitlines()[-1])["threshold"]["name"] == "custom"


def test_csv_goes_to_stdout_without_output(
    tiny: TinyModel, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = run(capsys, "score", tiny.path, folder / "a" / "b")
    assert code == 0
    lines = stdout.strip().splitlines()
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[:-1]))))
    assert sorted(Path(r["path"]).name for r in rows) == ["photo.jpg", "scan.bmp"]
    assert json.loads(lines[-1])["scored"] == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nosuch"], ["nosuch"]),
        (["tiny", "--version", "7"], ["version 7"]),
        (["tiny", "--threshold", "loose"], ["loose", "q0.95"]),
        (["tiny", "--output", "x.txt"], [".csv or .jsonl"]),
    ],
)
def test_bad_arguments_end_in_one_line(
    tiny: TinyModel,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: list[str],
) -> None:
    code, _, stderr = run(
        capsys, "score", args[0], folder, "--models-dir", tiny.path.parents[2], *args[1:]
    )
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    for word in words:
        assert word in stderr


def test_an_empty_folder_is_an_error(
    tiny: TinyModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run(capsys, "score", tiny.path, tmp_path)
    assert code == 2 and "no image files" in stderr


def test_score_runs_without_torch(tiny: TinyModel, folder: Path) -> None:
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "from cli.main import main\n"
        f"sys.exit(main(['score', {str(tiny.path)!r}, {str(folder)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["scored"] == 8


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance of 2 CPUs in this process; the engine uses it as it finds it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_writes_parquet_rows_with_the_scores_of_the_service(
    tiny: TinyModel,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    local_ray: None,
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "scores.parquet"
    code, stdout, stderr = run(
        capsys, "score", "tiny", folder, "--models-dir", tiny.path.parents[2],
        "--engine", "ray", "--output", out, "--batch-size", "4",
    )  # fmt: skip
    assert code == 0, stderr
    rows = pq.read_table(out).to_pylist()
    assert list(rows[0]) == [
        "path",
        "score",
        "is_anomaly",
        "threshold",
        "model",
        "version",
        "error",
    ]
    assert len(rows) == 9
    (bad,) = [r for r in rows if r["error"] is not None]
    assert Path(bad["path"]).name == "broken.png" and bad["score"] is None
    assert bad["is_anomaly"] is None
    scored = [r for r in rows if r["error"] is None]
    expected = server_scores(tiny, [Path(r["path"]) for r in scored])
    threshold = tiny.thresholds["q0.95"]
    for row in scored:
        assert row["score"] == pytest.approx(expected[row["path"]], rel=1e-6, abs=0)
        assert row["is_anomaly"] == (row["score"] > threshold)
        assert (row["threshold"], row["model"], row["version"]) == (threshold, "tiny", 1)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["engine"] == "ray" and summary["gpus_per_actor"] == 0
    assert (summary["files"], summary["scored"], summary["skipped"]) == (9, 8, 1)
    assert summary["anomalies"] == sum(r["is_anomaly"] for r in scored)
    assert summary["threshold"] == {"name": "q0.95", "value": threshold}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--engine", "ray"], ["--output F.parquet"]),
        (["--engine", "ray", "--output", "x.csv"], ["--output F.parquet"]),
        (["--actors", "2"], ["--engine ray"]),
        (["--address", "127.0.0.1:1"], ["--engine ray"]),
        (["--engine", "ray", "--output", "x.parquet", "--address", "127.0.0.1:1"],
         ["cannot reach the Ray cluster at 127.0.0.1:1"]),
    ],
)  # fmt: skip
def test_bad_ray_arguments_end_in_one_line(
    tiny: TinyModel,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    words: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capsys, "score", tiny.path, folder, *args)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert all(word in stderr for word in words)


def test_without_ray_the_engine_says_how_to_install_it(
    tiny: TinyModel,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "x.parquet"
    code, _, stderr = run(capsys, "score", tiny.path, folder, "--engine", "ray", "--output", out)
    assert code == 2
    assert stderr.strip() == (
        "deepsvdd score: error: --engine ray needs ray, which the serving install leaves out; "
        "install the batch extra: pip install 'deepsvdd-serve[batch]'"
    )
