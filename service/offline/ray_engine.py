"""`deepsvdd score --engine ray`: files read by Ray Data, decoded and scored by the service's
path (`score_bytes`) in N actors of one ONNX Runtime session each, written as Parquet.

Ray and pyarrow (the `batch` extra) are imported only when this engine runs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from service.offline.score import IMAGE_SUFFIXES, find_images, load, score_bytes
from service.settings import Settings

INSTALL_HINT = "pip install 'deepsvdd-serve[batch]'"
# Files per read task for a known list: Ray's default splits a list into at least 200 tasks,
# and with files of a few KB each task's start-up then costs more than its reading.
FILES_PER_READ = 1000
CONNECT_TIMEOUT_S = 10.0
CUDA = "CUDAExecutionProvider"


class RayEngineError(Exception):
    """Why the Ray engine cannot run: Ray missing, a cluster out of reach, bad inputs."""


@dataclass(frozen=True)
class RayJob:
    """One `deepsvdd score --engine ray` run."""

    model_path: Path
    inputs: list[str]
    output: str
    threshold: float
    actors: int
    batch_size: int
    address: str | None = None


@dataclass(frozen=True)
class RaySummary:
    """What the Parquet output holds, counted after the job."""

    files: int
    scored: int
    anomalies: int
    gpus_per_actor: int


def import_ray() -> ModuleType:
    """`ray` with Ray Data and pyarrow importable, or a one-line error saying how to get them."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data
    except ModuleNotFoundError as exc:
        raise RayEngineError(
            f"--engine ray needs {exc.name}, which the serving install leaves out; "
            f"install the batch extra: {INSTALL_HINT}"
        ) from exc
    return ray


def is_uri(path: str) -> bool:
    """`s3://bucket/x`, `gs://...`: a pyarrow filesystem URI rather than a local path."""
    return "://" in path


def read_inputs(paths: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """What `read_binary_files` is given: local files and folders expanded as the local engine
    expands them, or URIs as they are with the image extensions to keep (None: keep all)."""
    remote = [p for p in paths if is_uri(p)]
    if remote and len(remote) != len(paths):
        raise RayEngineError("PATHs are all local or all URIs, not a mix of the two")
    if remote:
        return list(paths), sorted(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise RayEngineError(f"no such file or folder: {', '.join(missing)}")
    files = [str(p.resolve()) for p in find_images([Path(p) for p in paths])]
    if not files:
        raise RayEngineError(f"no image files in {', '.join(paths)}")
    return files, None


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raises a one-line error unless `host:port` (or `ray://host:port`) accepts a connection;
    `auto` and other forms are left to `ray.init`."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise RayEngineError(f"--address {address}: {exc}") from exc
    if host is None or port is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {reason}") from exc


def local_cpus(actors: int) -> int:
    """The CPUs a local instance counts: the machine's, and at least one per actor (each
    holds one) plus one for the read tasks, which would otherwise wait forever."""
    return max(os.cpu_count() or 1, actors + 1)


def connect(ray: ModuleType, address: str | None, actors: int) -> bool:
    """Joins the cluster at `address` (checked first), or starts a local instance; True when
    this call started the connection (the caller then shuts it down). A Ray already
    initialised is used as is; without `address`, RAY_ADDRESS names the cluster where set (as
    in a job that Ray or KubeRay submits)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(
            num_cpus=local_cpus(actors), include_dashboard=False, logging_level=logging.WARNING
        )
        return True
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {first}") from exc
    return True


def gpus_per_actor(ray: ModuleType, providers: Sequence[str]) -> int:
    """1 when the providers include CUDA and the cluster has a GPU (each actor then holds one),
    else 0."""
    return int(CUDA in providers and ray.cluster_resources().get("GPU", 0) >= 1)


def read_tasks(files: list[str], extensions: list[str] | None, actors: int) -> int | None:
    """How many read tasks a listed set of files is split into (`FILES_PER_READ` each, at
    least one per actor); None for URIs, whose files Ray lists itself."""
    if extensions is not None:
        return None
    return max(actors, -(-len(files) // FILES_PER_READ))


def output_schema() -> Any:
    """The Parquet rows: one per file; score and is_anomaly null where error says why."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("score", pa.float64()),
            ("is_anomaly", pa.bool_()),
            ("threshold", pa.float64()),
            ("model", pa.string()),
            ("version", pa.int64()),
            ("error", pa.string()),
        ]
    )


class Scorer:
    """The `map_batches` callable: one actor, one ONNX Runtime session made in `__init__`."""

    def __init__(
        self, model_path: str, threshold: float, settings: Settings, threads: int = 1
    ) -> None:
        self.model = load(Path(model_path), settings, threads)
        self.threshold = threshold
        self.max_pixels = settings.max_pixels
        self.schema = output_schema()

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        """Ray Data's numpy batch of `{"bytes", "path"}` rows -> an Arrow table of results."""
        import pyarrow as pa

        paths = [str(path) for path in batch["path"]]
        named = list(zip(paths, (bytes(data) for data in batch["bytes"]), strict=True))
        outcomes = score_bytes(self.model, named, self.max_pixels)
        scores = [score for score, _ in outcomes]
        count = len(paths)
        columns = {
            "path": paths,
            "score": scores,
            "is_anomaly": [None if s is None else s > self.threshold for s in scores],
            "threshold": [self.threshold] * count,
            "model": [self.model.name] * count,
            "version": [self.model.version] * count,
            "error": [error for _, error in outcomes],
        }
        return pa.Table.from_pydict(columns, schema=self.schema)


def output_location(output: str) -> str:
    """Where the Parquet files go: the URI, or the local folder as an absolute path. Refuses
    one that exists already, whose old rows would mix with the new ones."""
    from pyarrow import fs

    where = output if is_uri(output) else str(Path(output).resolve())
    filesystem, inside = fs.FileSystem.from_uri(where)
    if filesystem.get_file_info(inside).type != fs.FileType.NotFound:
        raise RayEngineError(f"--output {output} exists; remove it or name another")
    return where


def summarise(output: str, gpus: int) -> RaySummary:
    """Counts the rows written (the dataset is streamed, so it is counted from the output)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(output, format="parquet").to_table(columns=["score", "is_anomaly"])
    return RaySummary(
        files=table.num_rows,
        scored=table.num_rows - table["score"].null_count,
        anomalies=int(pc.sum(table["is_anomaly"]).as_py() or 0),
        gpus_per_actor=gpus,
    )


def run(job: RayJob, settings: Settings) -> RaySummary:
    """Reads, scores and writes `job` on Ray (joined or started here), streaming: memory stays
    bounded however many files there are."""
    ray = import_ray()
    output = output_location(job.output)
    files, extensions = read_inputs(job.inputs)
    started = connect(ray, job.address, job.actors)
    try:
        gpus = gpus_per_actor(ray, settings.provider_preference)
        data = ray.data.read_binary_files(
            files,
            include_paths=True,
            file_extensions=extensions,
            override_num_blocks=read_tasks(files, extensions, job.actors),
        )
        scored = data.map_batches(
            Scorer,
            fn_constructor_kwargs={
                "model_path": str(job.model_path.resolve()),
                "threshold": job.threshold,
                "settings": settings,
            },
            batch_size=job.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=job.actors),
            num_gpus=gpus,
        )
        scored.write_parquet(output)
    finally:
        if started:
            ray.shutdown()
    return summarise(output, gpus)
