"""The Ray engine's pieces without a Ray instance: its actor's scoring (the local engine's
scores), its inputs, its output and its one-line errors."""

from __future__ import annotations

import ast
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import service
from service.offline import ray_engine
from service.offline.ray_engine import RayEngineError, Scorer
from service.offline.score import OfflineSettings, find_images, load, score_files
from tests.support.images import image_bytes, noise_image
from tests.support.models import TinyModel, build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_model(tmp_path_factory.mktemp("models"), "tiny", 1)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(image_bytes(noise_image(i)))
    (tmp_path / "sub" / "colour.jpg").write_bytes(
        image_bytes(noise_image(9, (40, 30), "RGB"), "JPEG")
    )
    (tmp_path / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not searched")
    return tmp_path


def test_the_actor_scores_as_the_local_engine_and_keeps_bad_files_as_rows(
    tiny: TinyModel, images: Path
) -> None:
    settings = OfflineSettings(providers="CPUExecutionProvider")
    files = find_images([images])
    scorer = Scorer(str(tiny.path), 5.0, settings)
    batch = {
        "path": np.array([str(f) for f in files], dtype=object),
        "bytes": np.array([f.read_bytes() for f in files], dtype=object),
    }
    rows = scorer(batch).to_pylist()
    local = list(score_files(load(tiny.path, settings), files, settings.max_pixels))
    assert [r["path"] for r in rows] == [str(f.path) for f in local]
    for row, expected in zip(rows, local, strict=True):
        assert (row["model"], row["version"], row["threshold"]) == ("tiny", 1, 5.0)
        if expected.score is None:
            assert row["score"] is None and row["is_anomaly"] is None
            assert row["error"] == expected.error and "broken.png" in row["error"]
        else:
            assert row["score"] == pytest.approx(expected.score, rel=1e-6, abs=0)
            assert row["is_anomaly"] == (row["score"] > 5.0) and row["error"] is None
    assert sum(r["error"] is not None for r in rows) == 1
    assert scorer.schema.names == list(rows[0])


def test_local_inputs_expand_as_the_local_engine_finds_images(images: Path) -> None:
    files, extensions = ray_engine.read_inputs([str(images), str(images / "notes.txt")])
    assert extensions is None
    expected = [*find_images([images]), images / "notes.txt"]
    assert files == [str(p.resolve()) for p in expected]


def test_uris_pass_through_with_the_image_extensions() -> None:
    files, extensions = ray_engine.read_inputs(["s3://bucket/images", "s3://bucket/more/"])
    assert files == ["s3://bucket/images", "s3://bucket/more/"]
    assert extensions is not None and "png" in extensions and "jpeg" in extensions


@pytest.mark.parametrize(
    ("paths", "words"),
    [
        (["s3://bucket/x", "local"], ["not a mix"]),
        (["nosuch-folder"], ["no such file", "nosuch-folder"]),
    ],
)
def test_bad_inputs_are_one_line_errors(paths: list[str], words: list[str]) -> None:
    with pytest.raises(RayEngineError) as caught:
        ray_engine.read_inputs(paths)
    assert all(word in str(caught.value) for word in words)


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RayEngineError, match="no image files"):
        ray_engine.read_inputs([str(tmp_path)])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_address_fails_fast_in_one_line(form: str) -> None:
    address = form.format(port=_closed_port())
    began = time.monotonic()
    with pytest.raises(RayEngineError) as caught:
        ray_engine.check_reachable(address, timeout_s=2.0)
    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Ray cluster at {address}")
    assert "\n" not in message


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayEngineError) as caught:
        ray_engine.import_ray()
    assert ray_engine.INSTALL_HINT in str(caught.value) and "ray" in str(caught.value)


def test_an_existing_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.parquet").mkdir()
    with pytest.raises(RayEngineError, match="exists"):
        ray_engine.output_location(str(tmp_path / "old.parquet"))
    assert ray_engine.output_location(str(tmp_path / "new.parquet")) == str(
        (tmp_path / "new.parquet").resolve()
    )


def test_a_local_instance_counts_a_cpu_per_actor_and_one_for_reading() -> None:
    assert ray_engine.local_cpus(1) >= 2
    assert ray_engine.local_cpus(64) == 65


def test_reads_are_split_by_file_count_and_uris_left_to_ray() -> None:
    files = [f"/x/{i}.png" for i in range(2500)]
    assert ray_engine.read_tasks(files, None, 1) == 3
    assert ray_engine.read_tasks(files[:10], None, 4) == 4
    assert ray_engine.read_tasks(["s3://b/x"], ["png"], 4) is None


def _imports(path: Path, nested: bool) -> set[str]:
    """Top-level names `path` imports: at module level, or anywhere with `nested`."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree) if nested else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ray_is_imported_lazily_and_by_the_engine_alone() -> None:
    batch = {"ray", "pyarrow"}
    root = Path(service.__file__).parent
    engine = root / "offline" / "ray_engine.py"
    assert not _imports(engine, nested=False) & batch
    assert _imports(engine, nested=True) >= batch
    others = [path for path in sorted(root.rglob("*.py")) if path != engine]
    assert others and not any(_imports(path, nested=True) & batch for path in others)
