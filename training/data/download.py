"""Downloads MNIST, Fashion-MNIST and CIFAR-10 from their public mirrors: the step callers
take before `load_dataset`, which reads only what is on disk.

Each file goes to a temporary name beside its target and takes its final name only once its
SHA-256 matches the table below; a failed download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from training.data.cifar10 import CIFAR10_DIR, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES
from training.data.common import DataError
from training.data.registry import DOWNLOADABLE, data_root, has_files

MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}


def _sha256sums(listing: str) -> dict[str, str]:
    """Parses `sha256sum` output ("<digest>  <file>" lines) into file name -> digest."""
    return {
        name: digest for digest, name in (line.split() for line in listing.strip().splitlines())
    }


# The digests of the files these mirrors serve, as torchvision, Keras and TFDS pin them.
SHA256 = {
    "mnist": _sha256sums("""
        440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
        3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
        8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
        f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
    """),
    "fashion-mnist": _sha256sums("""
        3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte.gz
        a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte.gz
        346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte.gz
        67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte.gz
    """),
    "cifar10": _sha256sums("""
        6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce  cifar-10-python.tar.gz
    """),
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MEMBERS = tuple(
    f"{CIFAR10_DIR}/{name}" for name in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, "batches.meta")
)
CHUNK = 1 << 20


def download_missing(name: str, data_dir: str | Path | None = None) -> None:
    """Fetches downloadable dataset `name` into its folder unless its files are there already;
    other sources (and datasets already on disk) are left to `load_dataset` as they are."""
    root = data_root(name, data_dir)
    if name in DOWNLOADABLE and not has_files(name, root):
        fetch(name, root)


def fetch(name: str, dest: Path, *, base_url: str | None = None, timeout: float = 60) -> None:
    """Downloads dataset `name` into `dest`, verifying each file; `base_url` replaces the mirror."""
    files = SHA256.get(name)
    if files is None:
        raise DataError(f"{name!r} cannot be downloaded; only {', '.join(SHA256)} can")
    base = base_url or MIRRORS[name]
    base = base if base.endswith("/") else base + "/"
    if not base.startswith(("https://", "http://")):
        raise DataError(f"download mirror {base!r} is not an http(s) URL")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for filename, digest in files.items():
        target = dest / filename
        if not (target.is_file() and _sha256_of(target) == digest):
            _download(base + filename, target, digest, timeout)
    if name == "cifar10":
        _extract_cifar10(dest / CIFAR10_ARCHIVE, dest)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Streams `url` to a temporary file beside `target`; renames it only if the digest matches."""
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "deepsvdd-serve"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            digest, received = hashlib.sha256(), 0
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            # http.client returns a short body without complaint when the peer hangs up.
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != received:
                raise DataError(
                    f"download of {url} failed: the connection closed after {received} "
                    f"of {length} bytes"
                )
        if digest.hexdigest() != sha256:
            raise DataError(
                f"download of {url} failed: SHA-256 {digest.hexdigest()} does not match the "
                f"expected {sha256}; the file was not kept"
            )
        os.replace(part, target)
    except urllib.error.HTTPError as e:
        raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
        raise DataError(f"download of {url} failed: {e}") from e
    finally:
        Path(part).unlink(missing_ok=True)


def _extract_cifar10(archive: Path, dest: Path) -> None:
    """Writes only the expected regular-file members, each under its fixed name, then drops
    the archive: no member chooses its own path, and links are refused."""
    written = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name not in CIFAR10_MEMBERS:
                    continue
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DataError(f"{archive}: {member.name} is not a regular file")
                with source:
                    _write_atomically(source, dest / member.name)
                written.add(member.name)
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"{archive}: cannot extract the archive ({e})") from e
    missing = sorted(set(CIFAR10_MEMBERS) - written)
    if missing:
        raise DataError(f"{archive}: missing members {', '.join(missing)}")
    archive.unlink()


def _write_atomically(source: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        os.replace(part, target)
    finally:
        Path(part).unlink(missing_ok=True)
