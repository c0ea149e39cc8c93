"""The offline scorer's pieces: which files a folder yields, its settings, the progress line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from service.offline.score import OfflineSettings, Progress, find_images


def test_folders_yield_image_files_recursively_and_skip_hidden_ones(tmp_path: Path) -> None:
    for name in ("b.png", "a/c.JPG", "a/d/e.webp", ".hidden/f.png", "a/.g.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images([tmp_path])]
    assert found == ["a/c.JPG", "a/d/e.webp", "b.png"]
    assert find_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # named: tried


def _providers() -> list[str]:
    return OfflineSettings().provider_preference


def test_providers_come_from_the_settings_with_the_cpu_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEEPSVDD_PROVIDERS", raising=False)
    assert _providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv("DEEPSVDD_PROVIDERS", "CPUExecutionProvider, CUDAExecutionProvider")
    assert _providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv("DEEPSVDD_PROVIDERS", "CPUExecutionProvider")
    assert _providers() == ["CPUExecutionProvider"]


def test_the_settings_need_no_models_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tool may name its model by path: the server's models directory need not exist.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPSVDD_MODELS_DIR", str(tmp_path / "nosuch"))
    monkeypatch.setenv("DEEPSVDD_MAX_PIXELS", "1000")
    settings = OfflineSettings()
    assert settings.models_dir == tmp_path / "nosuch" and settings.max_pixels == 1000


def test_notes_never_share_a_line_with_the_bar() -> None:
    out = io.StringIO()
    progress = Progress(out, 4, width=4)
    progress.advance(2)
    progress.note("skipped x")
    progress.advance(2)
    assert out.getvalue() == "\rscoring [##..] 2/4\nskipped x\n\rscoring [####] 4/4\n"
