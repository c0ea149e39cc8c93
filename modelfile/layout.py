"""Where model files live and how they are written: the repository layout Triton reads.

`<models>/<name>/<version>/model.onnx`, with Triton's `config.pbtxt` beside the versions.
Writes go to a temporary file renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, MODEL_FILE, SCORE_OUTPUT
from modelfile.metadata import METADATA_KEY, ModelMetadata

if TYPE_CHECKING:
    import onnxruntime as ort


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def claim_version(model_dir: Path) -> tuple[int, Path]:
    """Creates the next free version directory; mkdir is atomic, so two runs never share one."""
    model_dir.mkdir(parents=True, exist_ok=True)
    while True:
        version = next_version(model_dir)
        path = model_dir / str(version)
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return version, path


def write_atomic(path: Path, data: bytes) -> None:
    """Temporary file in the same directory, fsync, then rename: readers see all or nothing.
    A failure (a full disk, say) raises an OSError of the same errno that names `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot write {path} ({reason}); nothing was written") from exc
    finally:
        tmp.unlink(missing_ok=True)


def triton_config(meta: ModelMetadata, max_batch: int = 256) -> str:
    """Triton's config.pbtxt for the model directory: same repository, served unchanged."""
    spec = meta.input
    return (
        f'name: "{meta.name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch}\n"
        "input [\n"
        f'  {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ {spec.channels}, '
        f"{spec.height}, {spec.width} ] }}\n"
        "]\n"
        "output [\n"
        f'  {{ name: "{SCORE_OUTPUT}" data_type: TYPE_FP32 dims: [ 1 ] '
        "reshape: { shape: [ ] } },\n"
        f'  {{ name: "{EMBEDDING_OUTPUT}" data_type: TYPE_FP32 dims: [ {meta.rep_dim} ] }}'
        f"{_map_output(meta)}\n"
        "]\n"
        "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


def _map_output(meta: ModelMetadata) -> str:
    """A patch model's third output, `anomaly_map` [h, w] per image; nothing for the others."""
    if meta.patch is None:
        return ""
    h, w = meta.patch.grid
    return f',\n  {{ name: "{ANOMALY_MAP_OUTPUT}" data_type: TYPE_FP32 dims: [ {h}, {w} ] }}'


def resolve_model_path(model: str | Path, models_dir: Path = Path("models")) -> Path:
    """A model file, a model directory (latest version) or a name in the models directory."""
    path = Path(model)
    if not path.exists() and (models_dir / str(model)).is_dir():
        path = models_dir / str(model)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        versions = sorted(
            int(p.name) for p in path.iterdir() if p.name.isdigit() and (p / MODEL_FILE).is_file()
        )
        if not versions:
            raise FileNotFoundError(f"no {MODEL_FILE} under {path}")
        return path / str(versions[-1]) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r} is neither a file nor a model in {models_dir}")
    return path


def open_model(path: Path) -> tuple[ort.InferenceSession, ModelMetadata]:
    """A CPU ONNX Runtime session of a model file and its validated metadata."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types
        raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))
    return session, meta
