"""The model repository: `<models_dir>/<name>/<version>/model.onnx`, loaded into ONNX Runtime.

A snapshot (`Repository`) is immutable; a reload builds a new one and the app swaps it in.
Request input only ever looks names up in a snapshot's dict; no path is built from it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, MODEL_FILE, SCORE_OUTPUT
from modelfile.metadata import (
    METADATA_KEY,
    MetadataError,
    ModelMetadata,
    images_per_distance_run,
    is_valid_name,
)
from service.model_checks import ModelLoadError, check_io, warm_up
from service.providers import probe_providers

log = logging.getLogger(__name__)

# A failure's `model` for directories whose name could not be a model name (a metric label).
INVALID_NAME = "(invalid)"
# `<models_dir>/<name>/default_version`: the version that answers requests naming none
# (default: the latest). Triton ignores the file; its config.pbtxt is not read here.
DEFAULT_VERSION_FILE = "default_version"
# Longer than any version number written as text: a bigger file is not one.
_MAX_DEFAULT_VERSION_BYTES = 32


class RepositoryError(Exception):
    """The models directory itself cannot be read."""


# The largest float32 distance matrix (images x patches x coreset) a patch model's run builds:
# 64 MiB. Measured with ONNX Runtime on one thread, a 128-px patch model (29x29 patches, 2,048
# coreset vectors) scored 30-33 images/s in runs of 1-8 images, 22-23 in runs of 16-32 and 12
# in runs of 64 (bench/defects, AMD EPYC).
PATCH_RUN_BYTES = 64 * 2**20


def images_per_run(meta: ModelMetadata, max_batch: int) -> int:
    """How many images one ONNX Runtime run may take: `max_batch`, or fewer for a patch
    model, whose graph holds an (images x patches x coreset) distance matrix per view. It
    runs fastest when that matrix stays near the CPU's caches: at most PATCH_RUN_BYTES of
    it (9 images of 128 px with the default coreset, one of 512 px)."""
    if meta.patch is None:
        return max_batch
    cells = meta.patch.grid[0] * meta.patch.grid[1]
    return images_per_distance_run(cells, meta.patch.coreset, PATCH_RUN_BYTES, max_batch)


@dataclass(frozen=True)
class SessionConfig:
    """How every ONNX Runtime session is built."""

    providers: list[str]
    intra_op_threads: int


@dataclass(frozen=True)
class LoadFailure:
    """A model version that was refused, for logs, metrics and the reload answer."""

    model: str
    version: str
    reason: str


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model version with its ONNX Runtime session, validated and warmed up."""

    name: str
    version: int
    metadata: ModelMetadata
    session: ort.InferenceSession
    providers: tuple[str, ...]
    # The `(h, w)` grid of the graph's `anomaly_map` output; None: the graph has none.
    map_shape: tuple[int, int] | None = None

    def images_per_run(self, max_batch: int) -> int:
        return images_per_run(self.metadata, max_batch)

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph first (ONNX Runtime's own order)."""
        return self.providers[0]

    def run(self, images: np.ndarray) -> np.ndarray:
        """Scores float32 `(N, C, H, W)` pixel/255 images; returns float64 `(N,)`."""
        (scores,) = self.session.run([SCORE_OUTPUT], {INPUT_NAME: images})
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (images.shape[0],):
            raise RuntimeError(
                f"model {self.name} v{self.version} returned scores of shape {scores.shape} "
                f"for {images.shape[0]} images"
            )
        return scores

    def run_outputs(
        self, images: np.ndarray, extras: Collection[str]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`run`'s scores and the float32 `extras` outputs (`embedding`, `anomaly_map`) by
        name, from one ONNX Runtime run."""
        names = sorted(extras)
        scores, *others = self.session.run([SCORE_OUTPUT, *names], {INPUT_NAME: images})
        scores = np.asarray(scores, dtype=np.float64)
        arrays = {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, others, strict=True)}
        count = images.shape[0]
        if scores.shape != (count,) or any(a.shape[0] != count for a in arrays.values()):
            shapes = [scores.shape, *(a.shape for a in arrays.values())]
            raise RuntimeError(
                f"model {self.name} v{self.version} returned shapes {shapes} for {count} images"
            )
        return scores, arrays

    def outputs(self) -> tuple[str, ...]:
        """The graph outputs an inference may ask for: `score`, `embedding`, `anomaly_map`."""
        extra = (ANOMALY_MAP_OUTPUT,) if self.map_shape is not None else ()
        return (SCORE_OUTPUT, EMBEDDING_OUTPUT, *extra)


class Repository:
    """An immutable snapshot: model name -> version -> `LoadedModel`, and the default
    version of each model (the latest unless a loaded version is pinned)."""

    def __init__(
        self, models: Iterable[LoadedModel] = (), pinned: dict[str, int] | None = None
    ) -> None:
        self._models: dict[str, dict[int, LoadedModel]] = {}
        for model in models:
            self._models.setdefault(model.name, {})[model.version] = model
        self._pinned = {
            name: version
            for name, version in (pinned or {}).items()
            if version in self._models.get(name, {})
        }

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(name, {}))

    def all(self) -> list[LoadedModel]:
        return [self._models[n][v] for n in self.names() for v in self.versions(n)]

    def default_version(self, name: str) -> int | None:
        """The version that answers without `?version=`: the pinned one, else the latest."""
        versions = self._models.get(name)
        if not versions:
            return None
        return self._pinned.get(name, max(versions))

    def is_pinned(self, name: str) -> bool:
        return name in self._pinned

    def get(self, name: str, version: int | None = None) -> LoadedModel | None:
        """That version, or the default one when `version` is None; None when not loaded."""
        versions = self._models.get(name)
        if not versions:
            return None
        return versions.get(self._pinned.get(name, max(versions)) if version is None else version)

    def why_missing(self, name: str, version: int | None) -> tuple[str, str]:
        """The error code and message for a `get` that found nothing: what is loaded instead."""
        versions = self.versions(name)
        if not versions:
            loaded = ", ".join(self.names()) or "none"
            return "model_not_found", f"model {name[:64]!r} is not loaded (loaded: {loaded})"
        return (
            "version_not_found",
            f"model {name!r} has no version {version} (loaded: {versions}, "
            f"default: {self.default_version(name)})",
        )

    def default_name(self, configured: str | None) -> str | None:
        """The configured default model, else the first name in sorted order."""
        if configured is not None:
            return configured
        names = self.names()
        return names[0] if names else None


@dataclass(frozen=True)
class _Candidate:
    name: str
    version: int
    path: Path


def _read_pin(model_dir: Path) -> int | LoadFailure | None:
    """The version named by `model_dir/default_version`, None without the file."""
    path = model_dir / DEFAULT_VERSION_FILE
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            text = f.read(_MAX_DEFAULT_VERSION_BYTES + 1).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = "?"
    if text.isdigit() and int(text) > 0 and len(text) <= _MAX_DEFAULT_VERSION_BYTES:
        return int(text)
    return LoadFailure(
        model_dir.name,
        "",
        f"{model_dir.name}/{DEFAULT_VERSION_FILE} must hold one version number, "
        f"not {text[:16]!r}; the latest version is the default",
    )


def _discover(
    models_dir: Path,
) -> tuple[list[_Candidate], list[LoadFailure], dict[str, int]]:
    """Every `<name>/<version>/model.onnx` under `models_dir`, the directories refused, and
    the version each `default_version` file pins."""
    if not models_dir.is_dir():
        raise RepositoryError(f"models directory {str(models_dir)!r} does not exist")
    candidates: list[_Candidate] = []
    failures: list[LoadFailure] = []
    pins: dict[str, int] = {}
    for model_dir in sorted(models_dir.iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        if not is_valid_name(model_dir.name):
            failures.append(
                LoadFailure(INVALID_NAME, "", f"directory {model_dir.name!r} is not a model name")
            )
            continue
        pin = _read_pin(model_dir)
        if isinstance(pin, LoadFailure):
            failures.append(pin)
        elif pin is not None:
            pins[model_dir.name] = pin
        for version_dir in sorted(model_dir.iterdir()):
            if version_dir.name.startswith(".") or not version_dir.is_dir():
                continue
            text = version_dir.name
            if not (text.isascii() and text.isdigit() and str(int(text)) == text and int(text) > 0):
                failures.append(
                    LoadFailure(model_dir.name, "", f"version directory {text!r} is not an integer")
                )
                continue
            path = version_dir / MODEL_FILE
            if not path.is_file():
                log.info("skipping %s/%s: no %s yet", model_dir.name, text, MODEL_FILE)
                continue
            candidates.append(_Candidate(model_dir.name, int(text), path))
    return candidates, failures, pins


def available_providers(preference: list[str]) -> list[str]:
    """The preferred providers that work on this machine, in order; CPU always included.
    Probed once per process (`service.providers`), so no session asks for a missing one."""
    return list(probe_providers(tuple(preference)).providers)


def _session(path: Path, config: SessionConfig) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle intra-op threads would spin between batches and starve image decoding.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=config.providers)
    except Exception as exc:  # ONNX Runtime raises its own types for bad files
        text = str(exc).strip().replace(str(path), MODEL_FILE)  # no server paths in answers
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise ModelLoadError(f"ONNX Runtime cannot load it: {first_line}") from exc


def load_model(path: Path, name: str, version: int, config: SessionConfig) -> LoadedModel:
    """Loads, validates and warms up one model file; raises `ModelLoadError` saying why not."""
    session = _session(path, config)
    custom = session.get_modelmeta().custom_metadata_map
    try:
        meta = ModelMetadata.from_json(custom.get(METADATA_KEY))
    except MetadataError as exc:
        raise ModelLoadError(str(exc)) from exc
    if (meta.name, meta.version) != (name, version):
        raise ModelLoadError(
            f"its metadata names {meta.name!r} version {meta.version}, "
            f"but it sits at {name}/{version}"
        )
    has_map = check_io(session, meta)
    return LoadedModel(
        name=name,
        version=version,
        metadata=meta,
        session=session,
        providers=tuple(session.get_providers()),
        map_shape=warm_up(session, meta, has_map),
    )


def load_repository(
    models_dir: Path, config: SessionConfig, previous: Repository | None = None
) -> tuple[Repository, list[LoadFailure]]:
    """Loads every model under `models_dir`.

    A version that fails keeps its `previous` session when there was one, so a broken
    file dropped over a served model never takes it out of service.
    """
    candidates, failures, pins = _discover(models_dir)
    models: list[LoadedModel] = []
    for c in candidates:
        try:
            models.append(load_model(c.path, c.name, c.version, config))
        except (ModelLoadError, OSError) as exc:
            old = previous.get(c.name, c.version) if previous is not None else None
            kept = "; the loaded copy keeps serving" if old is not None else ""
            failures.append(LoadFailure(c.name, str(c.version), f"{exc}{kept}"))
            if old is not None:
                models.append(old)
    loaded = {(m.name, m.version) for m in models}
    for name, version in sorted(pins.items()):
        if (name, version) not in loaded and any(m.name == name for m in models):
            failures.append(
                LoadFailure(
                    name,
                    str(version),
                    f"{name}/{DEFAULT_VERSION_FILE} pins version {version}, which is not "
                    "loaded; the latest version is the default",
                )
            )
    for f in failures:
        log.error("refused model %s version %s: %s", f.model, f.version or "-", f.reason)
    for m in models:
        log.info("serving model %s v%d on %s", m.name, m.version, ", ".join(m.providers))
        if m.providers[0] != config.providers[0]:
            log.warning(
                "model %s v%d: %s was requested but %s runs it",
                m.name,
                m.version,
                config.providers[0],
                m.providers[0],
            )
    for name, version in sorted(pins.items()):
        if (name, version) in loaded:
            log.info(
                "model %s: version %d is the default (%s)", name, version, DEFAULT_VERSION_FILE
            )
    return Repository(models, pins), failures
