"""Downloads against a real HTTP server on the loopback interface, serving fixture files."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_data import write_cifar, write_idx_set
from training.data import DataError, download, load_dataset
from training.data.download import download_missing, fetch


class FileServer:
    """Serves `files` (URL path -> bytes); paths under /cut/ promise more bytes than they send."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path.removeprefix("/cut"))
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                cut = self.path.startswith("/cut/")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if cut else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return hashlib.sha256(body).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = FileServer()
    thread = threading.Thread(target=files.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield files
    files.httpd.shutdown()
    files.httpd.server_close()
    thread.join()


def serve_mnist(server: FileServer, tmp_path: Path) -> dict[str, str]:
    """Puts MNIST-format fixture files on the server; returns their digest table."""
    source = tmp_path / "source"
    write_idx_set(source)
    return {p.name: server.add(f"/mnist/{p.name}", p.read_bytes()) for p in source.iterdir()}


def test_fetch_downloads_and_verifies(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = serve_mnist(server, tmp_path)
    monkeypatch.setitem(download.SHA256, "mnist", digests)
    dest = tmp_path / "data"
    fetch("mnist", dest, base_url=f"{server.url}/mnist")
    assert sorted(p.name for p in dest.iterdir()) == sorted(digests)
    for path in dest.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[path.name]
    assert len(load_dataset("mnist", dest).x_train) == 30
    fetch("mnist", dest, base_url=f"{server.url}/mnist")
    assert len(server.requests) == 4  # verified files are not fetched twice


def test_load_dataset_download_uses_the_mirror(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(download.SHA256, "fashion-mnist", serve_mnist(server, tmp_path))
    monkeypatch.setitem(download.MIRRORS, "fashion-mnist", f"{server.url}/mnist/")
    download_missing("fashion-mnist", tmp_path / "data")
    fashion = load_dataset("fashion-mnist", tmp_path / "data")
    assert fashion.x_train.shape == (30, 28, 28, 1)
    assert fashion.class_names[0] == "t-shirt-top"


def test_checksum_mismatch_keeps_nothing(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = serve_mnist(server, tmp_path)
    digests["t10k-images-idx3-ubyte.gz"] = "0" * 64
    monkeypatch.setitem(download.SHA256, "mnist", digests)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz failed: SHA-256 .* does not"):
        fetch("mnist", dest, base_url=f"{server.url}/mnist")
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.glob(".*part"))


def test_cut_connection_keeps_nothing(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(download.SHA256, "mnist", serve_mnist(server, tmp_path))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"the connection closed after \d+ of \d+ bytes"):
        fetch("mnist", dest, base_url=f"{server.url}/cut/mnist")
    assert list(dest.iterdir()) == []


def test_http_error_is_reported(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz failed: HTTP 404"):
        fetch("mnist", tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_mirror_is_reported(tmp_path: Path) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens on this port any more
    with pytest.raises(DataError, match="failed"):
        fetch("mnist", tmp_path, base_url=f"http://127.0.0.1:{port}/", timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_only_known_datasets_and_http_mirrors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'gtsrb' cannot be downloaded"):
        fetch("gtsrb", tmp_path)
    with pytest.raises(DataError, match="not an http"):
        fetch("mnist", tmp_path, base_url="file:///etc/")


def cifar_archive(tmp_path: Path, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A cifar-10-python.tar.gz built from fixture batches, plus any `extra` members."""
    batches = write_cifar(tmp_path / "batches")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
        for member in extra or []:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


def test_cifar10_archive_is_extracted_safely(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    escape = tarfile.TarInfo("../escaped.txt")
    escape.size = 1
    archive = cifar_archive(tmp_path, [escape])
    digest = server.add("/cifar-10-python.tar.gz", archive)
    monkeypatch.setitem(download.SHA256, "cifar10", {"cifar-10-python.tar.gz": digest})
    dest = tmp_path / "data"
    fetch("cifar10", dest, base_url=server.url)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (dest / "cifar-10-python.tar.gz").exists()
    cifar = load_dataset("cifar10", dest)
    assert cifar.x_train.shape == (100, 32, 32, 3)
    assert np.array_equal(cifar.x_train, load_dataset("cifar10", tmp_path / "batches").x_train)


def test_cifar10_archive_with_a_linked_member_is_refused(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = write_cifar(tmp_path / "batches")
    (batches / "test_batch").unlink()
    link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
        tar.addfile(link)
    digest = server.add("/cifar-10-python.tar.gz", buffer.getvalue())
    monkeypatch.setitem(download.SHA256, "cifar10", {"cifar-10-python.tar.gz": digest})
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="test_batch is not a regular file"):
        fetch("cifar10", dest, base_url=server.url)
    assert not (dest / "cifar-10-batches-py" / "test_batch").exists()


def test_digest_table_is_complete() -> None:
    assert set(download.SHA256) == set(download.MIRRORS) == {"mnist", "fashion-mnist", "cifar10"}
    for files in download.SHA256.values():
        for digest in files.values():
            assert len(digest) == 64 and int(digest, 16) >= 0
    assert sorted(download.SHA256["mnist"]) == sorted(download.SHA256["fashion-mnist"])
