"""Scoring files without the HTTP server: the service's settings, decoding and ONNX Runtime
session, so that a file gets the score `POST /score` gives it.

`deepsvdd score` (both engines) and `deepsvdd calibrate` use it. File bytes go through
`best_pixels`, `to_input` and `LoadedModel.run` (`score_bytes`), the calls `POST /score` makes;
with maps, through `service.offline.maps`, as `POST /score?explain=true` makes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import field_validator

from modelfile import MODEL_FILE
from modelfile.layout import open_model, resolve_model_path
from modelfile.pixels import to_input
from service.decoding import best_pixels
from service.errors import ApiError
from service.offline.maps import scored_maps
from service.repository import (
    LoadedModel,
    ModelLoadError,
    SessionConfig,
    available_providers,
    load_model,
)
from service.settings import Settings

# The extensions a folder is searched for; a file named on the command line is always tried.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    | {".ppm", ".pgm", ".pbm", ".pnm"}
)


@dataclass(frozen=True)
class FileScore:
    """One file's outcome: a score, or the reason it was skipped."""

    path: Path
    score: float | None
    error: str | None = None
    png: bytes | None = None  # the anomaly map over the image, when asked for


def find_images(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the image files under the folders named (recursively, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            found.append(path)
    return found


def locate(model: str, models_dir: Path, version: int | None = None) -> Path:
    """A model file by path, directory or name; `version`: that version, else the latest."""
    if version is None:
        return resolve_model_path(model, models_dir)
    base = Path(model) if Path(model).is_dir() else models_dir / model
    path = base / str(version) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r} has no version {version} (no {path})")
    return path


class OfflineSettings(Settings):
    """The service's `DEEPSVDD_*` settings as the offline tools read them: the providers and
    the pixel limit. A tool names its model by path or `--models-dir`, so the server's models
    directory need not exist."""

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, path: Path) -> Path:
        return path


def load(path: Path, settings: Settings, threads: int = 0) -> LoadedModel:
    """The model file loaded, checked and warmed up as the service does it, on the
    settings' providers (CPU always last); `threads`: intra-op threads, 0 for ONNX Runtime's
    default (every core)."""
    _, meta = open_model(path)
    config = SessionConfig(available_providers(settings.provider_preference), threads)
    try:
        return load_model(path, meta.name, meta.version, config)
    except ModelLoadError as exc:
        raise ValueError(f"{path}: {exc}") from exc


class Progress:
    """A progress bar on one line of `out`; `note` prints a message on a line of its own."""

    def __init__(self, out: TextIO, total: int, width: int = 30) -> None:
        self.out, self.total, self.width = out, total, width
        self.done, self._open, self._drawn = 0, False, 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn < 0.2 and self.done < self.total:
            return
        self._drawn = now
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.out.write(f"\rscoring [{bar}] {self.done}/{self.total}")
        self._open = self.done < self.total
        if not self._open:
            self.out.write("\n")
        self.out.flush()

    def note(self, message: str) -> None:
        self.out.write(("\n" if self._open else "") + message + "\n")
        self._open = False
        self.out.flush()


def _decode(
    model: LoadedModel, named: Sequence[tuple[str, bytes]], max_pixels: int
) -> tuple[list[np.ndarray], list[str | None]]:
    """The service's pixels of each image that decodes, and per input its refusal or None."""
    meta = model.metadata
    pixels: list[np.ndarray] = []
    errors: list[str | None] = []
    for name, data in named:
        try:
            pixels.append(best_pixels(data, name, meta.input, max_pixels, meta.decode))
            errors.append(None)
        except ApiError as exc:
            errors.append(str(exc))
    return pixels, errors


def score_bytes(
    model: LoadedModel, named: Sequence[tuple[str, bytes]], max_pixels: int
) -> list[tuple[float | None, str | None]]:
    """(score, None) or (None, reason) per `(name, file bytes)`, in order: the service's pixel
    path (`best_pixels`), then one ONNX Runtime run; an image the service would refuse (not
    an image, more than `max_pixels`) gets the service's reason."""
    pixels, errors = _decode(model, named, max_pixels)
    scores = iter(model.run(to_input(pixels)).tolist() if pixels else [])
    return [(next(scores), None) if error is None else (None, error) for error in errors]


def map_bytes(
    model: LoadedModel, named: Sequence[tuple[str, bytes]], max_pixels: int, batch_size: int
) -> list[tuple[float | None, str | None, bytes | None]]:
    """`score_bytes`'s outcomes, each scored image with its anomaly map's PNG
    (`service.offline.maps`), the others with None."""
    pixels, errors = _decode(model, named, max_pixels)
    scores, pngs = scored_maps(model, to_input(pixels), batch_size) if pixels else ([], [])
    done = iter(zip(np.asarray(scores).tolist(), pngs, strict=True))
    outcomes: list[tuple[float | None, str | None, bytes | None]] = []
    for error in errors:
        score, png = next(done) if error is None else (None, None)
        outcomes.append((score, error, png))
    return outcomes


def _read(path: Path) -> bytes | str:
    """The file's bytes, or why it could not be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def score_files(
    model: LoadedModel,
    files: list[Path],
    max_pixels: int,
    batch_size: int = 64,
    progress: Progress | None = None,
    maps: bool = False,
) -> Iterator[FileScore]:
    """Scores `files` in batches, in order; an unreadable file yields its error, not a score;
    an image of more than `max_pixels` is refused, as the service refuses it. With `maps`,
    each scored file has its anomaly map's PNG."""
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        read = [_read(path) for path in chunk]
        pairs = zip(chunk, read, strict=True)
        readable = [(str(path), data) for path, data in pairs if isinstance(data, bytes)]
        if maps:
            outcomes = map_bytes(model, readable, max_pixels, batch_size)
        else:
            outcomes = [(s, e, None) for s, e in score_bytes(model, readable, max_pixels)]
        scored = iter(outcomes)
        for path, data in zip(chunk, read, strict=True):
            score, error, png = next(scored) if isinstance(data, bytes) else (None, data, None)
            yield FileScore(path, score, error, png)
        if progress is not None:
            progress.advance(len(chunk))
