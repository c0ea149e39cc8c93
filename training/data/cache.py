"""A folder's images decoded once into a memory-mapped uint8 `.npy` (`--cache-dir`).

The key is a hash of every file's path, size and mtime and of the image size, channels and
decode policy, so a changed, added or removed file or another size or policy makes a new
entry. A builder holds an exclusive lock on the entry, decodes to a temporary name and renames
it into place: two ranks or two jobs asking at once decode it once; the others wait, then open
it read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from modelfile.metadata import DecodePolicy
from training.data.common import DataError

CACHE_FORMAT = 1


def cache_key(paths: Sequence[Path], size: int, channels: int, policy: DecodePolicy) -> str:
    """Hex digest over the files' resolved paths, sizes and mtimes, the size, channels and
    decode policy."""
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "size": size, "channels": channels, "decode": policy}
    digest.update(json.dumps(settings).encode())
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot read the file ({exc.strerror})") from exc
        digest.update(f"\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def cached_images(
    cache_dir: Path,
    paths: Sequence[Path],
    size: int,
    channels: int,
    decode: Callable[[Path], np.ndarray],
    policy: DecodePolicy = "full",
) -> np.ndarray:
    """The images of `paths` as a read-only memory map (N, size, size, channels), decoded
    with `decode` (which decodes under `policy`) only when no entry for exactly these files
    exists yet."""
    cache_dir = Path(cache_dir).expanduser()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--cache-dir {cache_dir}: cannot create it ({exc.strerror})") from exc
    key = cache_key(paths, size, channels, policy)
    final = cache_dir / f"images-{key}.npy"
    shape = (len(paths), size, size, channels)
    if not final.exists():
        with _locked(cache_dir / f"images-{key}.lock"):
            if not final.exists():  # another builder may have finished while we waited
                _build(final, paths, shape, decode)
    return _open(final, shape)


def _build(
    final: Path,
    paths: Sequence[Path],
    shape: tuple[int, int, int, int],
    decode: Callable[[Path], np.ndarray],
) -> None:
    # Written as a stream, not through a writable memory map: its dirty pages would count in
    # the builder's RSS until written back.
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for path in paths:
                pixels = decode(path)
                if pixels.shape != shape[1:] or pixels.dtype != np.uint8:
                    raise DataError(f"{path}: decoded to {pixels.dtype} {pixels.shape}")
                f.write(np.ascontiguousarray(pixels).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _open(path: Path, shape: tuple[int, int, int, int]) -> np.ndarray:
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"cache {path} is unreadable ({exc}); delete it to rebuild") from exc
    if images.shape != shape or images.dtype != np.uint8:
        raise DataError(
            f"cache {path} holds {images.dtype} {images.shape}, expected uint8 {shape}; "
            "delete it to rebuild"
        )
    mapping = getattr(images, "_mmap", None)
    if isinstance(mapping, mmap.mmap):
        # Batches read rows in a random order: readahead would read pages nobody asked for.
        mapping.madvise(mmap.MADV_RANDOM)
    return images


class _locked:
    """An exclusive advisory lock (flock) on `path`, held for the `with` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
